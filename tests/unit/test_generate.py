"""The synthetic data generator: deterministic, in every promised form, and exact about its outcome.

The expected counts in `GenerateReport` are what the pipeline's end-to-end tests assert
against, so here every record the generator wrote is read back the way the contract reads
files and judged by the pure-Python reference (`digital_finance.contract.reference`); the
verdicts must add up to the report exactly.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest

from digital_finance.contract.schemas import DATASETS, FUNDS, STOCKS, DatasetSpec
from digital_finance.generate import MUTUAL_FUNDS, GenerateReport, generate

N_STOCKS = 3_000
N_FUNDS = 500

_BOM = b"\xef\xbb\xbf"


# --------------------------------------------------------------------------------------------
# Reading the files back, by the rules of docs/CONTRACT_RULES.md


@dataclass(frozen=True)
class RawRecord:
    path: Path
    line: int  # 1-based line where the record starts
    raw: bytes  # the record's text as it is in the file (without the line end)


def _array_elements(text: str) -> list[tuple[int, str]] | None:
    """The elements of a JSON-array file with their exact text and start line, or None."""
    try:
        if not isinstance(json.loads(text), list):
            return None
    except ValueError:
        return None
    decoder = json.JSONDecoder()
    elements: list[tuple[int, str]] = []
    pos = text.index("[") + 1
    while True:
        while text[pos] in " \t\r\n,":
            pos += 1
        if text[pos] == "]":
            return elements
        _, end = decoder.raw_decode(text, pos)
        elements.append((text.count("\n", 0, pos) + 1, text[pos:end]))
        pos = end


def read_file(path: Path) -> tuple[list[RawRecord], int]:
    """The records of one input file and the number of blank lines in it."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    if data.lstrip()[:1] == b"[":
        elements = _array_elements(data.decode("utf-8"))
        if elements is not None:
            return [RawRecord(path, line, raw.encode()) for line, raw in elements], 0
    records: list[RawRecord] = []
    blank = 0
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final line end closes the last line, it does not open another
    for number, line in enumerate(lines, start=1):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            blank += 1
            continue
        records.append(RawRecord(path, number, line))
    return records, blank


def dataset_files(report: GenerateReport, dataset: str) -> list[Path]:
    files = sorted(p for p in report.files if p.parent.name == dataset)
    assert files == sorted((report.files[0].parents[1] / dataset).glob("*"))
    return files


# --------------------------------------------------------------------------------------------
# Judging every record with the reference


@dataclass
class Verdicts:
    records: int
    blank_lines: int
    invalid: Counter[str]
    accepted: list[tuple[int, RawRecord, dict[str, object], str | None]]  # order, raw, values


def judge(report: GenerateReport, dataset: str) -> Verdicts:
    from digital_finance.contract.reference import Accepted, check_record

    spec = DATASETS[dataset]
    verdicts = Verdicts(0, 0, Counter(), [])
    for path in dataset_files(report, dataset):
        records, blank = read_file(path)
        verdicts.blank_lines += blank
        for record in records:
            verdicts.records += 1
            try:
                text = record.raw.decode("utf-8")
            except UnicodeDecodeError:
                verdicts.invalid["invalid_utf8"] += 1
                continue
            result = check_record(text, spec)
            if isinstance(result, Accepted):
                verdicts.accepted.append(
                    (len(verdicts.accepted), record, result.values, result.rescued)
                )
            else:
                verdicts.invalid[result.reason] += 1
    return verdicts


def key_of(spec: DatasetSpec, values: dict[str, object]) -> tuple[object, ...]:
    return tuple(values[column] for column in spec.key)


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerateReport]:
    out = tmp_path_factory.mktemp("generated")
    return out, generate(out, N_STOCKS, N_FUNDS, seed=11)


@pytest.fixture(scope="module")
def verdicts(generated: tuple[Path, GenerateReport]) -> dict[str, Verdicts]:
    _, report = generated
    return {name: judge(report, name) for name in DATASETS}


# --------------------------------------------------------------------------------------------
# Determinism


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", 1_500, 300, seed=5)
    second = generate(tmp_path / "b", 1_500, 300, seed=5)
    assert _snapshot(tmp_path / "a") == _snapshot(tmp_path / "b")
    assert first.records == second.records
    assert first.invalid == second.invalid
    assert first.distinct_valid_keys == second.distinct_valid_keys


def test_another_seed_writes_other_data(tmp_path: Path) -> None:
    generate(tmp_path / "a", 1_500, 300, seed=5)
    generate(tmp_path / "b", 1_500, 300, seed=6)
    a, b = _snapshot(tmp_path / "a"), _snapshot(tmp_path / "b")
    assert a.keys() == b.keys()
    assert a["stocks/part-00000.jsonl"] != b["stocks/part-00000.jsonl"]


def test_a_rerun_replaces_the_earlier_files(tmp_path: Path) -> None:
    generate(tmp_path, 50_000, 300, seed=1)
    report = generate(tmp_path, 300, 300, seed=1)
    assert sorted(tmp_path.glob("stocks/*")) == sorted(
        p for p in report.files if p.parent.name == "stocks"
    )


# --------------------------------------------------------------------------------------------
# File forms


def test_writes_every_promised_file_form(generated: tuple[Path, GenerateReport]) -> None:
    out, report = generated
    for dataset in DATASETS:
        files = dataset_files(report, dataset)
        names = [p.name for p in files]
        assert len([n for n in names if n.endswith(".jsonl")]) >= 2, names
        gz = [p for p in files if p.name.endswith(".ndjson.gz")]
        assert len(gz) == 1 and gz[0].read_bytes()[:2] == b"\x1f\x8b"
        arrays = [p for p in files if p.name.endswith(".json")]
        assert len(arrays) == 1
        text = arrays[0].read_text(encoding="utf-8")
        assert text.startswith("[\n") and isinstance(json.loads(text), list)
        assert text.count("\n") > 3 * len(json.loads(text)), "pretty-printed, multi-line"
        crlf = [p for p in files if p.read_bytes().startswith(_BOM)]
        assert len(crlf) == 1
        body = crlf[0].read_bytes()
        assert body.count(b"\r\n") == body.count(b"\n") > 0
        unterminated = [p for p in files if p.suffix == ".jsonl" and p.read_bytes()[-1:] != b"\n"]
        assert len(unterminated) == 1, "one file ends without a final line end"
    assert json.loads((out / "expected.json").read_text(encoding="utf-8")) == report.to_json(out)


@pytest.mark.parametrize("n", [0, 1, 5, 199, 200])
def test_small_counts_still_make_valid_output(tmp_path: Path, n: int) -> None:
    report = generate(tmp_path, n, n, seed=3)
    for dataset in DATASETS:
        got = judge(report, dataset)
        assert got.records == report.records[dataset] == n
        assert dict(got.invalid) == report.invalid[dataset]
        keys = {key_of(DATASETS[dataset], values) for _, _, values, _ in got.accepted}
        assert len(keys) == report.distinct_valid_keys[dataset]


def test_reports_progress(tmp_path: Path) -> None:
    seen: list[int] = []
    generate(tmp_path, 250_000, 1_000, seed=2, on_progress=seen.append)
    assert seen == sorted(seen)
    assert seen[-1] == 251_000
    assert len(seen) >= 3
    assert max(b - a for a, b in zip([0, *seen], seen, strict=False)) <= 100_000


# --------------------------------------------------------------------------------------------
# The report is exact


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_record_counts_match(
    generated: tuple[Path, GenerateReport], verdicts: dict[str, Verdicts], dataset: str
) -> None:
    _, report = generated
    got = verdicts[dataset]
    assert got.records == report.records[dataset] == (N_STOCKS if dataset == "stocks" else N_FUNDS)
    assert got.blank_lines == report.blank_lines[dataset] > 0


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_every_reference_verdict_matches_the_report(
    generated: tuple[Path, GenerateReport], verdicts: dict[str, Verdicts], dataset: str
) -> None:
    _, report = generated
    got = verdicts[dataset]
    assert dict(got.invalid) == report.invalid[dataset]
    assert len(got.accepted) + sum(got.invalid.values()) == report.records[dataset]
    keys = {key_of(DATASETS[dataset], values) for _, _, values, _ in got.accepted}
    assert len(keys) == report.distinct_valid_keys[dataset]


def test_about_one_percent_is_invalid_and_covers_the_reasons(
    generated: tuple[Path, GenerateReport],
) -> None:
    _, report = generated
    stocks = report.invalid["stocks"]
    assert 0.005 * N_STOCKS <= sum(stocks.values()) <= 0.02 * N_STOCKS
    assert {"invalid_json", "not_an_object", "duplicate_key", "invalid_utf8"} <= stocks.keys()
    for name in ("stock_id", "company_id", "symbol", "price", "timestamp"):
        assert {f"missing_{name}", f"invalid_{name}"} <= stocks.keys()
    assert {"invalid_volume", "invalid_exchange", "invalid_currency"} <= stocks.keys()


def test_gold_and_referential_warnings_match(
    generated: tuple[Path, GenerateReport], verdicts: dict[str, Verdicts]
) -> None:
    _, report = generated
    company_of: dict[object, object] = {}
    for _, _, values, _ in verdicts["stocks"].accepted:
        sid = values["stock_id"]
        assert company_of.setdefault(sid, values["company_id"]) == values["company_id"]
    listings = Counter(company_of.values())
    assert set(listings.values()) <= {1, 2}
    assert 1 in listings.values() and 2 in listings.values()
    holdings = {key_of(FUNDS, values) for _, _, values, _ in verdicts[MUTUAL_FUNDS].accepted}
    gold = sum(listings.get(company, 0) for _, company in holdings)
    unmatched = sum(1 for _, company in holdings if company not in listings)
    assert gold == report.gold_rows
    assert unmatched == report.unmatched_holdings
    assert 0 < unmatched < 0.05 * len(holdings)
    assert len(holdings) <= gold <= 2 * len(holdings)


# --------------------------------------------------------------------------------------------
# Realism: the cases the pipeline must get right are all there


def test_duplicates_updates_stale_records_and_ties(verdicts: dict[str, Verdicts]) -> None:
    for dataset, spec in DATASETS.items():
        event = spec.event_time
        by_key: dict[tuple[object, ...], list[tuple[int, dict[str, object], bytes]]] = defaultdict(
            list
        )
        for order, record, values, _ in verdicts[dataset].accepted:
            by_key[key_of(spec, values)].append((order, values, record.raw))
        raws = Counter(record.raw for _, record, _, _ in verdicts[dataset].accepted)
        assert sum(c - 1 for c in raws.values()) > 0.05 * len(raws), "exact duplicates"
        updated = stale = ties = 0
        for rows in by_key.values():
            times = [values[event] for _, values, _ in rows]
            instants = [t for t in times if isinstance(t, datetime)]
            assert len(instants) == len(times)
            if len(set(instants)) > 1:
                updated += 1
            if any(b < a for a, b in pairwise(instants)):
                stale += 1
            latest = max(instants)
            winners = {tuple(v.items()) for _, v, _ in rows if v[event] == latest}
            if len(winners) > 1:
                ties += 1
        assert updated > 0.03 * len(by_key), dataset
        assert stale > 0, dataset
        assert ties > 0, dataset


_FORMS = {
    "Z": re.compile(r'^"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"$'),
    "offset": re.compile(r'^"[^"]*[+-]\d\d:\d\d"$'),
    "+05:30": re.compile(r'^"[^"]*\+05:30"$'),
    "naive": re.compile(r'^"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d{1,6})?"$'),
    "epoch_s": re.compile(r"^\d{10}$"),
    "epoch_s_str": re.compile(r'^"\d{10}"$'),
    "epoch_ms": re.compile(r"^\d{13}$"),
    "epoch_ms_str": re.compile(r'^"\d{13}"$'),
    **{
        f"frac{k}": re.compile(rf'^"[^"]*:\d\d\.\d{{{k}}}(Z|[+-]\d\d:\d\d)?"$') for k in range(1, 7)
    },
}


def test_every_event_time_form_occurs(verdicts: dict[str, Verdicts]) -> None:
    seen: set[str] = set()
    for _, record, _, _ in verdicts["stocks"].accepted:
        match = re.search(rb'"timestamp": ("[^"]*"|\d+)', record.raw)
        assert match is not None
        text = match.group(1).decode()
        seen.update(name for name, form in _FORMS.items() if form.match(text))
    assert seen == set(_FORMS)


def test_values_look_real(verdicts: dict[str, Verdicts]) -> None:
    accepted = verdicts["stocks"].accepted
    raws = b"\n".join(record.raw for _, record, _, _ in accepted)
    symbols = {values["symbol"] for _, _, values, _ in accepted}
    assert all(isinstance(s, str) and re.fullmatch(r"[A-Z]{1,5}([.-][A-Z])?", s) for s in symbols)
    assert any(str(s).endswith(".B") for s in symbols)
    exchanges = {values["exchange"] for _, _, values, _ in accepted}
    assert {"NASDAQ", "NYSE", "XETRA", "Börse Frankfurt", "Börse Stuttgart"} <= exchanges
    currencies = Counter(values["currency"] for _, _, values, _ in accepted)
    assert currencies.most_common(1)[0][0] == "USD"
    assert b'"currency": "eur"' in raws
    assert re.search(rb'"price": 999999999999\.999999[,}]', raws)
    assert re.search(rb'"price": \d(\.\d+)?[eE]', raws)
    assert re.search(rb'"price": "', raws)
    assert b'"volume"' in raws and any(v["volume"] is None for _, _, v, _ in accepted)
    assert any(rescued for _, _, _, rescued in accepted)
    assert any(values["stock_id"] == 2**63 - 1 for _, _, values, _ in accepted)
    funds = verdicts[MUTUAL_FUNDS].accepted
    assert any(rescued for _, _, _, rescued in funds)
    assert any(values["fund_name"] for _, _, values, _ in funds)
    assert len({values["fund_id"] for _, _, values, _ in funds}) >= N_FUNDS // 70


def test_spec_names_are_the_contract() -> None:
    assert STOCKS.name == "stocks" and FUNDS.name == MUTUAL_FUNDS

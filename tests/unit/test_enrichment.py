"""Enrichments: the Enrichment contract, the three built-ins, config loading and pickling."""

from __future__ import annotations

import decimal
import json
import pickle
import sys
import textwrap
import zoneinfo
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digital_finance.contract.schemas import MAX_INT64
from digital_finance.enrichment import (
    BUILTINS,
    Enrichment,
    EnrichmentConfigError,
    EnrichmentError,
    apply_all,
    exchange_mic,
    for_dataset,
    load_enrichment,
    load_enrichments,
    notional_value,
    output_schema,
    sector,
    silver_columns,
    validate_inputs,
)
from digital_finance.enrichment.exchanges import EXCHANGES, lookup_table
from digital_finance.generate.values import _EXCHANGES as GENERATED_EXCHANGES

REPO = Path(__file__).resolve().parents[2]
SHIPPED_SECTORS = REPO / "data" / "reference" / "sectors.csv"
GICS_SECTORS = {
    "Communication Services",
    "Consumer Discretionary",
    "Consumer Staples",
    "Energy",
    "Financials",
    "Health Care",
    "Industrials",
    "Information Technology",
    "Materials",
    "Real Estate",
    "Utilities",
}
MAX_PRICE = Decimal("999999999999.999999")  # the contract's largest price
# Python's default decimal context keeps 28 digits and would round the products compared here.
WIDE = decimal.Context(prec=60)
PRICE = pa.decimal128(18, 6)
UTC_US = pa.timestamp("us", tz="UTC")


def stocks_batch(
    prices: Sequence[Decimal | None],
    volumes: Sequence[int | None] | None = None,
    exchanges: Sequence[str | None] | None = None,
    company_ids: Sequence[int | None] | None = None,
) -> pa.RecordBatch:
    """A silver stocks candidate batch with the contract's types and the system columns."""
    n = len(prices)
    return pa.RecordBatch.from_pydict(
        {
            "stock_id": pa.array(range(1, n + 1), pa.int64()),
            "company_id": pa.array(company_ids or [100 + i for i in range(n)], pa.int64()),
            "symbol": pa.array([f"S{i}" for i in range(n)], pa.string()),
            "price": pa.array(prices, PRICE),
            "volume": pa.array(volumes or [1] * n, pa.int64()),
            "exchange": pa.array(exchanges or ["NYSE"] * n, pa.string()),
            "currency": pa.array(["USD"] * n, pa.string()),
            "event_time": pa.array([0] * n, UTC_US),
            "_batch_id": pa.array([7] * n, pa.int64()),
        },
        metadata={b"origin": b"test"},
    )


def funds_batch(company_ids: Sequence[int | None]) -> pa.RecordBatch:
    n = len(company_ids)
    return pa.RecordBatch.from_pydict(
        {
            "fund_id": pa.array([f"F{i}" for i in range(n)], pa.string()),
            "fund_name": pa.array([None] * n, pa.string()),
            "company_id": pa.array(company_ids, pa.int64()),
            "holding_weight": pa.array([Decimal("1.5")] * n, pa.decimal128(9, 6)),
            "nav": pa.array([Decimal("10")] * n, PRICE),
            "as_of": pa.array([0] * n, UTC_US),
        }
    )


def _first_price(batch: pa.RecordBatch) -> list[pa.Array]:
    return [batch.column("price")]


def make(
    compute: Any = _first_price,
    *,
    outputs: tuple[pa.Field, ...] = (pa.field("copy", PRICE),),
    inputs: tuple[str, ...] = ("price",),
    name: str = "probe",
    dataset: str = "stocks",
) -> Enrichment:
    return Enrichment(name=name, dataset=dataset, inputs=inputs, outputs=outputs, compute=compute)


# --- the Enrichment contract -------------------------------------------------------------


def test_apply_appends_outputs_and_keeps_columns_rows_and_metadata() -> None:
    batch = stocks_batch(
        [Decimal("3"), Decimal("1"), None, Decimal("2")],
        volumes=[10, 20, 30, None],
        exchanges=["LSE", None, "NYSE", "XETRA"],
    )
    out = apply_all([notional_value(), exchange_mic()], batch)
    assert out.schema.names == [*batch.schema.names, "notional", "exchange_mic", "exchange_tz"]
    assert out.schema.metadata == batch.schema.metadata
    for name in batch.schema.names:
        assert out.column(name).equals(batch.column(name))
        assert out.schema.field(name) == batch.schema.field(name)
    assert out.column("notional").to_pylist() == [Decimal("30"), Decimal("20"), None, None]
    assert out.column("exchange_mic").to_pylist() == ["XLON", None, "XNYS", "XETR"]


def test_compute_sees_only_its_inputs_in_declared_order() -> None:
    seen: list[list[str]] = []

    def spy(batch: pa.RecordBatch) -> list[pa.Array]:
        seen.append(batch.schema.names)
        return [pa.array([None] * batch.num_rows, pa.string())]

    e = make(spy, inputs=("volume", "stock_id"), outputs=(pa.field("probe", pa.string()),))
    e.apply(stocks_batch([Decimal(1), Decimal(2)]))
    assert seen == [["volume", "stock_id"]]


def test_empty_batch_and_no_enrichments() -> None:
    empty = stocks_batch([])
    out = apply_all([notional_value(), exchange_mic()], empty)
    assert out.num_rows == 0
    assert out.schema.names[-3:] == ["notional", "exchange_mic", "exchange_tz"]
    batch = stocks_batch([Decimal(1)])
    assert apply_all([], batch) is batch


def test_lists_are_accepted_and_stored_as_tuples() -> None:
    e = Enrichment("probe", "stocks", ["price"], [pa.field("copy", PRICE)], _first_price)  # type: ignore[arg-type]
    assert e.inputs == ("price",)
    assert e.outputs == (pa.field("copy", PRICE),)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Probe"}, "lower_snake_case"),
        ({"name": "1probe"}, "lower_snake_case"),
        ({"dataset": "bonds"}, "unknown dataset 'bonds'"),
        ({"inputs": ("timestamp",)}, "not silver columns of stocks"),
        ({"inputs": ("price", "price")}, "repeat"),
        ({"inputs": ("nav",)}, "not silver columns of stocks"),
        ({"outputs": ()}, "declares no outputs"),
        ({"outputs": (pa.field("price", PRICE),)}, "clashes with a silver column"),
        ({"outputs": (pa.field("_rescued", pa.string()),)}, "lower_snake_case"),
        ({"outputs": (pa.field("Sector", pa.string()),)}, "lower_snake_case"),
        ({"outputs": (pa.field("a", pa.string()), pa.field("a", pa.int64()))}, "declared twice"),
        ({"outputs": (pa.field("a", pa.string(), nullable=False),)}, "must be nullable"),
        ({"outputs": (pa.field("a", pa.uint32()),)}, "not stored alike"),
        ({"outputs": (pa.field("a", pa.decimal256(40, 2)),)}, "not stored alike"),
        ({"outputs": (pa.field("a", pa.timestamp("ns", tz="UTC")),)}, "not stored alike"),
        ({"outputs": (pa.field("a", pa.list_(pa.uint8())),)}, "not stored alike"),
        ({"outputs": ("a",)}, "must be pyarrow.Field"),
        ({"compute": "not a function"}, "not callable"),
    ],
)
def test_bad_definitions_are_rejected_when_made(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(EnrichmentConfigError, match=message):
        make(**kwargs)


def test_storable_nested_and_temporal_types_are_accepted() -> None:
    outputs = (
        pa.field("tags", pa.list_(pa.string())),
        pa.field("point", pa.struct([("x", pa.float64()), ("at", UTC_US)])),
        pa.field("day", pa.date32()),
    )
    assert make(outputs=outputs).output_names == ("tags", "point", "day")


def test_mutual_fund_inputs_are_checked_against_their_own_columns() -> None:
    e = make(inputs=("nav", "as_of"), dataset="mutual_funds", outputs=(pa.field("x", PRICE),))
    validate_inputs(e)
    assert silver_columns("mutual_funds") == (
        "fund_id",
        "fund_name",
        "company_id",
        "holding_weight",
        "nav",
        "as_of",
    )
    with pytest.raises(EnrichmentConfigError, match="not silver columns of mutual_funds"):
        make(inputs=("price",), dataset="mutual_funds")


def _returns(*arrays: Any) -> Any:
    def compute(batch: pa.RecordBatch) -> Any:
        return list(arrays)

    return compute


@pytest.mark.parametrize(
    ("result", "field", "message"),
    [
        ([], pa.field("a", pa.int64()), "returned 0 arrays for 1 outputs"),
        ([pa.array([1, 2, 3])], pa.field("a", pa.int64()), "3 values for 2 rows"),
        ([[1, 2]], pa.field("a", pa.int64()), "expected a pyarrow.Array"),
        ([pa.array([1.5, 2.5])], pa.field("a", PRICE), "only lossless casts"),
        ([pa.array([1, 2])], pa.field("a", pa.string()), "only lossless casts"),
        ([pa.array(["1", "2"])], pa.field("a", pa.int64()), "only lossless casts"),
        ([pa.array([1.5, 2.5], pa.float64())], pa.field("a", pa.float32()), "only lossless"),
        ([pa.array([2**40, 1], pa.int64())], pa.field("a", pa.int32()), "not in range"),
        ([pa.array([10**15, 1])], pa.field("a", PRICE), "does not fit in precision 18"),
        (
            [pa.array([Decimal("1.25"), None], pa.decimal128(10, 2))],
            pa.field("a", pa.decimal128(10, 1)),
            "data loss",
        ),
        ([pa.array([0, 1], pa.timestamp("us"))], pa.field("a", UTC_US), "only lossless"),
        ([pa.array([1, 1_500], pa.timestamp("ns", "UTC"))], pa.field("a", UTC_US), "would lose"),
    ],
)
def test_wrong_results_raise_naming_the_enrichment(
    result: list[Any], field: pa.Field, message: str
) -> None:
    e = make(_returns(*result), outputs=(field,), name="faulty")
    with pytest.raises(EnrichmentError, match=message) as info:
        e.apply(stocks_batch([Decimal(1), Decimal(2)]))
    assert "'faulty'" in str(info.value)


def test_lone_array_instead_of_a_sequence_is_refused() -> None:
    e = make(lambda b: b.column("price"), name="lone")
    with pytest.raises(EnrichmentError, match=r"sequence of arrays .* e\.g\. \[array\]"):
        e.apply(stocks_batch([Decimal(1)]))


@pytest.mark.parametrize(
    ("result", "field", "expected"),
    [
        (pa.array([1, None], pa.int32()), pa.field("a", pa.int64()), [1, None]),
        (pa.array([7, 8], pa.int64()), pa.field("a", PRICE), [Decimal(7), Decimal(8)]),
        (pa.array(["x", None], pa.large_string()), pa.field("a", pa.string()), ["x", None]),
        (
            pa.array(["x", "y"]).dictionary_encode(),
            pa.field("a", pa.string()),
            ["x", "y"],
        ),
        (pa.nulls(2), pa.field("a", pa.string()), [None, None]),
        (
            pa.chunked_array([pa.array([1.5], pa.float32()), pa.array([None], pa.float32())]),
            pa.field("a", pa.float64()),
            [1.5, None],
        ),
        (
            pa.array([1_000, None], pa.timestamp("ns", "Europe/Berlin")),
            pa.field("a", UTC_US),
            [1, None],
        ),
    ],
)
def test_lossless_results_are_cast_to_the_declared_type(
    result: Any, field: pa.Field, expected: list[Any]
) -> None:
    out = make(_returns(result), outputs=(field,)).apply(stocks_batch([Decimal(1), Decimal(2)]))
    column = out.column("a")
    assert column.type == field.type
    if pa.types.is_timestamp(field.type):
        column = column.cast(pa.int64())
    assert column.to_pylist() == expected


def test_exceptions_in_compute_become_enrichment_errors() -> None:
    def broken(batch: pa.RecordBatch) -> list[pa.Array]:
        raise ZeroDivisionError("boom")

    with pytest.raises(
        EnrichmentError, match=r"'broken' failed on a batch of 1 rows: Zero"
    ) as info:
        make(broken, name="broken").apply(stocks_batch([Decimal(1)]))
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_batch_without_inputs_or_with_outputs_already_is_refused() -> None:
    batch = stocks_batch([Decimal(1)])
    with pytest.raises(EnrichmentError, match=r"no column\(s\) \['price'\]"):
        make().apply(batch.drop_columns(["price"]))
    with pytest.raises(EnrichmentError, match=r"already has column\(s\) \['notional'\]"):
        notional_value().apply(notional_value().apply(batch))


def test_output_schema_matches_apply_all_and_rejects_clashes() -> None:
    batch = stocks_batch([Decimal(1)])
    chain = [notional_value(), exchange_mic()]
    assert output_schema(batch.schema, chain) == apply_all(chain, batch).schema
    with pytest.raises(EnrichmentError, match="'notional' is already a column"):
        output_schema(batch.schema, [notional_value(), notional_value()])
    enriched = output_schema(batch.schema, chain)
    with pytest.raises(EnrichmentError, match="'exchange_mic' is already a column"):
        output_schema(enriched, [exchange_mic()])


def test_enrichments_of_two_datasets_never_share_a_batch(tmp_path: Path) -> None:
    funds = sector(
        reference=_csv(tmp_path, "company_id,sector\n1,Energy\n"), dataset="mutual_funds"
    )
    chain = [notional_value(), funds]
    with pytest.raises(EnrichmentError, match="different datasets"):
        apply_all(chain, stocks_batch([Decimal(1)]))
    with pytest.raises(EnrichmentError, match="different datasets"):
        output_schema(stocks_batch([Decimal(1)]).schema, chain)
    assert for_dataset(chain, "stocks") == (chain[0],)
    assert for_dataset(chain, "mutual_funds") == (funds,)
    with pytest.raises(EnrichmentError, match="unknown dataset"):
        for_dataset(chain, "bonds")


# --- notional_value ----------------------------------------------------------------------


def test_notional_is_exact_at_the_contract_bounds() -> None:
    prices = [MAX_PRICE, MAX_PRICE, Decimal("0.000001"), Decimal("0.000001"), Decimal("123.456789")]
    volumes = [MAX_INT64, 1, MAX_INT64, 0, 3]
    out = notional_value().apply(stocks_batch(prices, volumes))
    notional = out.column("notional")
    assert notional.type == pa.decimal128(38, 6)
    assert notional.to_pylist() == [
        Decimal("9223372036854775797776627963145.224193"),
        Decimal("999999999999.999999"),
        Decimal("9223372036854.775807"),
        Decimal("0"),
        Decimal("370.370367"),
    ]
    # The largest product of the contract has 31 integer digits: decimal(38, 6) holds 32, so
    # notional cannot overflow for any record silver accepts.
    assert WIDE.multiply(MAX_PRICE, MAX_INT64) < Decimal(10) ** 32
    assert notional[0].as_py() == WIDE.multiply(MAX_PRICE, MAX_INT64)


def test_notional_is_null_when_volume_or_price_is_null() -> None:
    out = notional_value().apply(stocks_batch([Decimal(2), None, None], [None, 5, None]))
    assert out.column("notional").to_pylist() == [None, None, None]


def test_notional_refuses_prices_outside_the_contract_instead_of_overflowing() -> None:
    batch = stocks_batch([Decimal(1)]).set_column(
        3, "price", pa.array([Decimal(10) ** 30], pa.decimal128(38, 6))
    )
    with pytest.raises(EnrichmentError, match="'notional_value'"):
        notional_value().apply(batch)


def test_notional_accepts_a_wider_decimal_type_with_contract_values() -> None:
    batch = stocks_batch([Decimal(1)], [4]).set_column(
        3, "price", pa.array([MAX_PRICE], pa.decimal128(38, 10))
    )
    assert notional_value().apply(batch).column("notional").to_pylist() == [
        Decimal("3999999999999.999996")
    ]


def test_notional_refuses_float_prices() -> None:
    batch = stocks_batch([Decimal(1)]).set_column(3, "price", pa.array([1.5], pa.float64()))
    with pytest.raises(EnrichmentError, match="never goes through float"):
        notional_value().apply(batch)


prices = st.decimals(min_value=Decimal("0.000001"), max_value=MAX_PRICE, places=6, allow_nan=False)
volumes = st.one_of(st.none(), st.integers(0, MAX_INT64), st.sampled_from([0, 1, MAX_INT64]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(prices, volumes), min_size=1, max_size=30))
def test_notional_equals_the_python_decimal_product(rows: list[tuple[Decimal, int | None]]) -> None:
    batch = stocks_batch([p for p, _ in rows], [v for _, v in rows])
    got = notional_value().apply(batch).column("notional").to_pylist()
    want = [None if v is None else WIDE.multiply(p, v) for p, v in rows]
    assert got == want


# --- exchange_mic ------------------------------------------------------------------------


def lookup(names: list[str | None], e: Enrichment | None = None) -> list[tuple[Any, Any]]:
    batch = stocks_batch([Decimal(1)] * len(names), exchanges=names)
    out = (e or exchange_mic()).apply(batch)
    return list(
        zip(
            out.column("exchange_mic").to_pylist(),
            out.column("exchange_tz").to_pylist(),
            strict=True,
        )
    )


def test_every_exchange_the_generator_writes_is_known() -> None:
    names = [json.loads(text) for text, _, _ in GENERATED_EXCHANGES]
    got = dict(zip(names, lookup(names), strict=True))
    assert got == {
        "NASDAQ": ("XNAS", "America/New_York"),
        "NYSE": ("XNYS", "America/New_York"),
        "NYSE Arca": ("ARCX", "America/New_York"),
        "XETRA": ("XETR", "Europe/Berlin"),
        "Börse Frankfurt": ("XFRA", "Europe/Berlin"),
        "Börse Stuttgart": ("XSTU", "Europe/Berlin"),
        "LSE": ("XLON", "Europe/London"),
        "Euronext Paris": ("XPAR", "Europe/Paris"),
        "SIX Swiss Exchange": ("XSWX", "Europe/Zurich"),
        "東京証券取引所": ("XTKS", "Asia/Tokyo"),
        "TSX": ("XTSE", "America/Toronto"),
    }


@pytest.mark.parametrize(
    ("name", "mic"),
    [
        ("nasdaq", "XNAS"),
        ("  NYSE\t", "XNYS"),
        ("nyse   arca", "ARCX"),
        ("euronext\u00a0paris", "XPAR"),  # no-break space
        ("\uff2e\uff39\uff33\uff25", "XNYS"),  # full-width letters
        ("Bo\u0308rse Frankfurt", "XFRA"),  # decomposed umlaut
        ("BÖRSE STUTTGART", "XSTU"),
        ("tse", "XTKS"),
        ("JPX", "XTKS"),
        ("HKEX", "XHKG"),
        ("ASX", "XASX"),
        ("NSE", "XNSE"),
        ("BSE", "XBOM"),
        ("six", "XSWX"),
        ("xlon", "XLON"),  # a MIC matches itself
        ("XTSE", "XTSE"),
        ("ARCX", "ARCX"),
    ],
)
def test_names_match_ignoring_case_width_and_whitespace(name: str, mic: str) -> None:
    assert lookup([name])[0][0] == mic


def test_unknown_empty_and_null_exchanges_give_null() -> None:
    assert lookup(["Moon Exchange", "", "   ", None, "NYSEE"]) == [(None, None)] * 5


def test_exchange_lookup_accepts_other_string_layouts() -> None:
    batch = stocks_batch([Decimal(1)] * 3)
    for array in (
        pa.array(["lse", None, "asx"], pa.large_string()),
        pa.array(["lse", None, "asx"]).dictionary_encode(),
        pa.array(["lse", None, "asx"], pa.string_view()),
    ):
        out = exchange_mic().apply(batch.set_column(5, "exchange", array))
        assert out.column("exchange_mic").to_pylist() == ["XLON", None, "XASX"]


def test_built_in_table_is_consistent() -> None:
    keys, mics, zones = lookup_table()
    assert len(set(keys.to_pylist())) == len(keys)
    for mic, _, _ in EXCHANGES:
        assert len(mic) == 4 and mic.isupper()
    for tz in set(zones.to_pylist()):
        zoneinfo.ZoneInfo(tz)  # raises for a name the time-zone database does not know
    assert set(mics.to_pylist()) == {mic for mic, _, _ in EXCHANGES}
    assert pc.all(pc.equal(keys, pc.utf8_upper(keys))).as_py()


def test_extra_entries_add_and_replace_names() -> None:
    e = exchange_mic(
        extra={"MYX": ["XKLS", "Asia/Kuala_Lumpur"], "tse": ["xtse", " America/Toronto "]}
    )
    assert lookup(["myx", "Bursa", "XKLS", "TSE", "東京証券取引所", "NYSE"], e) == [
        ("XKLS", "Asia/Kuala_Lumpur"),
        (None, None),
        ("XKLS", "Asia/Kuala_Lumpur"),
        ("XTSE", "America/Toronto"),
        ("XTKS", "Asia/Tokyo"),
        ("XNYS", "America/New_York"),
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"MYX": ["XKLS", "Asia/Kuala_Lumpr"]}, "'Asia/Kuala_Lumpr' is not an IANA time zone"),
        ({"MYX": ["XKLS", "../../etc/passwd"]}, "not an IANA time zone"),
        ({"MYX": ["XKL", "Asia/Kuala_Lumpur"]}, "'XKL' is not a MIC"),
        ({"MYX": "XKLS"}, r'expected \["MIC", "Area/City"\]'),
        ({"MYX": ["XKLS", "Asia/Kuala_Lumpur", "x"]}, "expected"),
        ({"MYX": ["XKLS", 3]}, "expected"),
        ({"  ": ["XKLS", "Asia/Kuala_Lumpur"]}, "non-empty"),
        (["MYX", "XKLS"], "extra must be a table"),
    ],
)
def test_bad_extra_entries_are_rejected(extra: Any, message: str) -> None:
    with pytest.raises(EnrichmentConfigError, match=message):
        exchange_mic(extra=extra)


# --- sector ------------------------------------------------------------------------------


def _csv(folder: Path, text: str, name: str = "sectors.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_sector_lookup(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "company_id,sector,note\n"
        "101,Information Technology,x\n"
        " 202 , Energy ,\n"
        "101,Information Technology,listed twice alike\n"
        "007,Utilities,leading zeros\n"
        f"{MAX_INT64},Financials,\n",
    )
    e = sector(reference=path)
    assert e.dataset == "stocks"
    ids = [202, 999, None, 101, 7, MAX_INT64, 101]
    out = e.apply(stocks_batch([Decimal(1)] * len(ids), company_ids=ids))
    assert out.schema.field("sector") == pa.field("sector", pa.string())
    assert out.column("sector").to_pylist() == [
        "Energy",
        None,
        None,
        "Information Technology",
        "Utilities",
        "Financials",
        "Information Technology",
    ]


def test_sector_for_mutual_funds_and_relative_reference(tmp_path: Path) -> None:
    _csv(tmp_path, "company_id,sector\n5,Materials\n", name="ref.csv")
    e = sector(reference="ref.csv", dataset="mutual_funds", base_dir=tmp_path)
    assert e.dataset == "mutual_funds"
    assert e.apply(funds_batch([5, 6])).column("sector").to_pylist() == ["Materials", None]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a readable CSV file"),
        ("company_id,sector\n", "has a header but no rows"),
        ("company,sector\n1,Energy\n", r"lacks column\(s\) \['company_id'\]"),
        ("company_id;sector\n1;Energy\n", r"lacks column\(s\) \['company_id', 'sector'\]"),
        ("company_id,sector\n1,Energy,extra\n", "not a readable CSV file"),
        ("company_id,sector\nabc,Energy\n", "line 2: company_id 'abc' is not an integer"),
        ("company_id,sector\n1,Energy\n1.5,Energy\n", "line 3: company_id '1.5'"),
        ("company_id,sector\n-3,Energy\n", "company_id '-3'"),
        ("company_id,sector\n0,Energy\n", "company_id '0'"),
        ("company_id,sector\n9223372036854775808,Energy\n", "company_id '9223372036854775808'"),
        ("company_id,sector\n,Energy\n", "company_id '' is not"),
        ("company_id,sector\n1, \n", "line 2: company_id 1 has an empty sector"),
        (
            "company_id,sector\n1,Energy\n2,Utilities\n1,Financials\n",
            "company_id 1 has sector 'Energy' \\(line 2\\) and 'Financials' \\(line 4\\)",
        ),
        (
            "company_id,sector\n" + "".join(f"x{i},Energy\n" for i in range(7)),
            r"\(and 2 more\)",
        ),
    ],
)
def test_bad_sector_references_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(EnrichmentConfigError, match=message) as info:
        sector(reference=path)
    assert str(path) in str(info.value)


def test_sector_option_errors(tmp_path: Path) -> None:
    with pytest.raises(EnrichmentConfigError, match=r"nope\.csv does not exist \(nope\.csv taken"):
        sector(reference="nope.csv", base_dir=tmp_path)
    with pytest.raises(EnrichmentConfigError, match="taken from the current folder"):
        sector(reference="surely/not/here.csv")
    with pytest.raises(EnrichmentConfigError, match="is not a file"):
        sector(reference=tmp_path)
    with pytest.raises(EnrichmentConfigError, match="reference must be the path"):
        sector(reference="")
    with pytest.raises(EnrichmentConfigError, match="reference must be the path"):
        sector(reference=5)  # type: ignore[arg-type]
    path = _csv(tmp_path, "company_id,sector\n1,Energy\n")
    with pytest.raises(EnrichmentConfigError, match='dataset must be "stocks" or "mutual_funds"'):
        sector(reference=path, dataset="bonds")


def test_shipped_sector_reference_is_gics_and_covers_the_sample_and_generated_ids() -> None:
    e = sector(reference=SHIPPED_SECTORS)
    ids = [101, 102, 103, 104, 1_000_000, 1_001_999, 999, 990_000_000]
    got = e.apply(stocks_batch([Decimal(1)] * len(ids), company_ids=ids)).column("sector")
    assert got.to_pylist()[:3] == ["Information Technology"] * 3
    assert got.null_count == 2  # 999 and 990_000_000 are companies without a listing
    companies, values = e.compute.keywords["companies"], e.compute.keywords["values"]  # type: ignore[attr-defined]
    assert set(values.to_pylist()) == GICS_SECTORS
    assert len(companies) == 2_004


# --- pickling (Spark ships enrichments to its Python workers) ----------------------------


def _all_builtins(tmp_path: Path) -> list[Enrichment]:
    ref = _csv(tmp_path, "company_id,sector\n100,Energy\n102,Utilities\n")
    return [
        notional_value(),
        exchange_mic(extra={"MYX": ["XKLS", "Asia/Kuala_Lumpur"]}),
        sector(reference=ref),
    ]


def _roundtrip_applies_alike(dumps: Any, loads: Any, enrichments: list[Enrichment]) -> None:
    batch = stocks_batch(
        [MAX_PRICE, Decimal("2.5"), None],
        [MAX_INT64, None, 3],
        ["myx", "Börse Frankfurt", None],
        [100, 101, 102],
    )
    copies = [loads(dumps(e)) for e in enrichments]
    assert [c.name for c in copies] == [e.name for e in enrichments]
    assert [c.outputs for c in copies] == [e.outputs for e in enrichments]
    assert apply_all(copies, batch).equals(apply_all(enrichments, batch))


def test_builtins_survive_pickle_without_the_reference_file(tmp_path: Path) -> None:
    enrichments = _all_builtins(tmp_path)
    payload = pickle.dumps(enrichments)
    (tmp_path / "sectors.csv").unlink()  # workers never read the file
    copies = pickle.loads(payload)
    _roundtrip_applies_alike(pickle.dumps, pickle.loads, copies)


def test_builtins_and_closures_survive_cloudpickle(tmp_path: Path) -> None:
    try:
        cloudpickle = pytest.importorskip("cloudpickle")
    except pytest.skip.Exception:
        # Spark pickles with the copy of cloudpickle it vendors.
        cloudpickle = pytest.importorskip(
            "pyspark.cloudpickle", reason="neither cloudpickle nor pyspark is installed"
        )
    factor = Decimal(2)
    doubled = Enrichment(
        name="doubled_price",
        dataset="stocks",
        inputs=("price",),
        outputs=(pa.field("doubled", pa.decimal128(38, 6)),),
        compute=lambda b: [pc.multiply(b.column("price"), pa.scalar(factor, pa.decimal128(2, 0)))],
    )
    _roundtrip_applies_alike(cloudpickle.dumps, pickle.loads, [*_all_builtins(tmp_path), doubled])


# --- configuration -----------------------------------------------------------------------


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A user package on sys.path with enrichment factories, as a company would write it."""
    name = "acme_enrichments_for_test"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from decimal import Decimal
            from functools import partial
            from pathlib import Path

            import pyarrow as pa
            import pyarrow.compute as pc

            from digital_finance.enrichment import Enrichment


            def _bucket(batch, *, threshold):
                big = pc.greater_equal(batch.column("price"), pa.scalar(threshold, batch.column("price").type))
                return [pc.if_else(big, "large", "small")]


            def risk_bucket(threshold="1000000"):
                return Enrichment(
                    name="risk_bucket",
                    dataset="stocks",
                    inputs=("price",),
                    outputs=(pa.field("risk_bucket", pa.string()),),
                    compute=partial(_bucket, threshold=Decimal(threshold)),
                )


            def where_am_i(base_dir):
                return Enrichment(
                    name="where_am_i",
                    dataset="stocks",
                    inputs=("stock_id",),
                    outputs=(pa.field("where", pa.string()),),
                    compute=lambda b: [pa.array([str(base_dir)] * b.num_rows)],
                )


            def shadow_price():
                return Enrichment(
                    name="shadow_price",
                    dataset="stocks",
                    inputs=("price",),
                    outputs=(pa.field("price", pa.decimal128(18, 6)),),
                    compute=lambda b: [b.column("price")],
                )


            def not_an_enrichment():
                return "oops"


            def picky(limit):
                raise ValueError(f"limit {limit} is too high")


            NOT_CALLABLE = 3
            """
        ),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_builtin_items_load_with_options_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "ref").mkdir()
    _csv(tmp_path / "ref", "company_id,sector\n100,Energy\n")
    items: list[dict[str, Any]] = [
        {"name": "notional_value"},
        {"name": "exchange_mic", "extra": {"MYX": ["XKLS", "Asia/Kuala_Lumpur"]}},
        {"name": "sector", "reference": "ref/sectors.csv"},
        {"name": "sector", "reference": "ref/sectors.csv", "dataset": "mutual_funds"},
    ]
    loaded = load_enrichments(items, tmp_path)
    assert [(e.name, e.dataset) for e in loaded] == [
        ("notional_value", "stocks"),
        ("exchange_mic", "stocks"),
        ("sector", "stocks"),
        ("sector", "mutual_funds"),
    ]
    out = apply_all(for_dataset(loaded, "stocks"), stocks_batch([Decimal(2)], [3], ["myx"], [100]))
    row = out.to_pylist()[0]
    assert (row["notional"], row["exchange_mic"], row["sector"]) == (Decimal(6), "XKLS", "Energy")
    assert set(BUILTINS) == {"notional_value", "exchange_mic", "sector"}


def test_user_factories_load_with_their_options(user_module: str, tmp_path: Path) -> None:
    e = load_enrichment({"function": f"{user_module}:risk_bucket", "threshold": "100"}, tmp_path)
    out = e.apply(stocks_batch([Decimal("99.999999"), Decimal(100), None]))
    assert out.column("risk_bucket").to_pylist() == ["small", "large", None]
    default = load_enrichment({"function": f"{user_module}:risk_bucket"}, tmp_path)
    assert default.apply(stocks_batch([Decimal(100)])).column("risk_bucket").to_pylist() == [
        "small"
    ]
    here = load_enrichment({"function": f"{user_module}:where_am_i"}, tmp_path)
    assert here.apply(stocks_batch([Decimal(1)])).column("where").to_pylist() == [str(tmp_path)]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"name": "notional"}, "unknown built-in enrichment 'notional'; the built-ins are "),
        ({"name": "notional"}, "notional_value, exchange_mic, sector"),
        ({}, "exactly one of name"),
        ({"name": "sector", "function": "a:b"}, "exactly one of name"),
        ({"function": "no_colon_here"}, 'as "package.module:factory"'),
        ({"function": "acme:with space"}, 'as "package.module:factory"'),
        ({"function": 3}, 'as "package.module:factory"'),
        ({"function": "surely_not_installed_pkg.mod:f"}, "cannot import 'surely_not_installed"),
        ({"function": "{mod}:missing"}, "has no attribute 'missing'"),
        ({"function": "{mod}:NOT_CALLABLE"}, "'NOT_CALLABLE' is not callable"),
        ({"function": "{mod}:not_an_enrichment"}, "returned str, not an Enrichment"),
        ({"function": "{mod}:picky", "limit": 5}, "ValueError: limit 5 is too high"),
        ({"function": "{mod}:risk_bucket", "treshold": "1"}, r"do not fit risk_bucket\("),
        ({"function": "{mod}:picky"}, "missing a required argument: 'limit'"),
        ({"name": "notional_value", "scale": 2}, "unexpected keyword argument 'scale'"),
        ({"name": "sector"}, "missing a required argument: 'reference'"),
        ({"name": "sector", "reference": "x.csv", "base_dir": "/"}, "base_dir is not an option"),
    ],
)
def test_bad_items_say_what_to_do(
    item: dict[str, Any], message: str, user_module: str, tmp_path: Path
) -> None:
    if isinstance(item.get("function"), str):
        item = item | {"function": item["function"].replace("{mod}", user_module)}
    with pytest.raises(EnrichmentConfigError, match=message):
        load_enrichment(item, tmp_path)


def test_config_errors_are_value_errors() -> None:
    assert issubclass(EnrichmentConfigError, ValueError)
    assert issubclass(EnrichmentConfigError, EnrichmentError)


def test_load_enrichments_rejects_columns_added_twice(tmp_path: Path) -> None:
    items = [{"name": "exchange_mic"}, {"name": "notional_value"}, {"name": "exchange_mic"}]
    with pytest.raises(
        EnrichmentConfigError, match=r"#1 \(exchange_mic\) and #3 \(exchange_mic\) both add"
    ):
        load_enrichments(items, tmp_path)


def test_load_enrichments_rejects_outputs_named_like_silver_columns(
    tmp_path: Path, user_module: str
) -> None:
    items = [{"name": "notional_value"}, {"function": f"{user_module}:shadow_price"}]
    with pytest.raises(
        EnrichmentConfigError,
        match=r"#2: enrichment 'shadow_price', output 'price': clashes with a silver column",
    ):
        load_enrichments(items, tmp_path)


def test_load_enrichments_names_the_failing_entry(tmp_path: Path) -> None:
    with pytest.raises(EnrichmentConfigError, match=r"\[\[enrichments\]\] #2: unknown built-in"):
        load_enrichments([{"name": "notional_value"}, {"name": "nope"}], tmp_path)
    with pytest.raises(EnrichmentConfigError, match="must be a table"):
        load_enrichments(["notional_value"], tmp_path)  # type: ignore[list-item]
    with pytest.raises(EnrichmentConfigError, match="array of tables"):
        load_enrichments({"name": "notional_value"}, tmp_path)  # type: ignore[dict-item]
    assert load_enrichments([], tmp_path) == ()


# --- the documentation's example ---------------------------------------------------------


def test_the_documented_example_factory_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = (REPO / "docs" / "ENRICHMENT.md").read_text(encoding="utf-8")
    after = doc.split("A complete example, `my_company/enrich.py`:", 1)[1]
    source = after.split("```python\n", 1)[1].split("```", 1)[0]
    package = tmp_path / "my_company"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "enrich.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        item = {"function": "my_company.enrich:risk_bucket", "threshold": "1000000"}
        e = load_enrichment(item, tmp_path)
        batch = stocks_batch(
            [Decimal("250.5"), Decimal("10"), Decimal("99.999999")], [10_000, None, 10_000]
        )
        assert e.apply(batch).column("risk_bucket").to_pylist() == ["large", None, "small"]
        with pytest.raises(EnrichmentConfigError, match="threshold must be a decimal number"):
            load_enrichment(item | {"threshold": "lots"}, tmp_path)
    finally:
        for name in ("my_company.enrich", "my_company"):
            sys.modules.pop(name, None)

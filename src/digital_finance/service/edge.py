"""The contract at the door: a request's records split and checked before it is accepted.

The body is one JSON object, one JSON array of objects (`application/json`) or NDJSON
(`application/x-ndjson`). Each record is checked by the pipeline's own code — the native
kernel (record by record for a few, in one call for many), `contract.reference` for
whatever the kernel is unsure of or where it is not installed — so the answer names
exactly the records quarantine will hold, with the same reasons.

Two kinds of verdict:
- a record that is not well-formed JSON of an object (invalid UTF-8, invalid JSON such as
  NaN or a duplicate key, too deep, too large, a string over the limit) or that sets a field
  the server owns refuses the whole request (400): nothing of it is kept;
- a record that breaks a field rule (a missing price, a bad date) is accepted into the log
  like any other source's record, and quarantine keeps it with its reason; the answer lists
  it, so the caller knows without reading quarantine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from digital_finance.contract import reference
from digital_finance.contract.json_exact import nesting_exceeds
from digital_finance.contract.schemas import (
    DUPLICATE_KEY,
    INVALID_JSON,
    INVALID_UTF8,
    NESTING_TOO_DEEP,
    NOT_AN_OBJECT,
    RECORD_TOO_LARGE,
    DatasetSpec,
)
from digital_finance.service.problems import ApiError

SERVER_OWNED_FIELD = "server_owned_field"
STRING_TOO_LONG = "string_too_long"
REFUSED = frozenset(
    {RECORD_TOO_LARGE, INVALID_UTF8, NESTING_TOO_DEEP, INVALID_JSON, NOT_AN_OBJECT, DUPLICATE_KEY}
)
# the columns the pipeline writes about a record: a client never sets them
SERVER_OWNED = frozenset(
    {
        "_batch_id", "_run_id", "_ingested_at", "_source", "_source_file", "_line_number",
        "_rescued", "_quarantined_at",
    }
)  # fmt: skip
MAX_LISTED = 100
# fewer records than this are checked one by one (the kernel's `check_one`, ~2 µs a record);
# more in one call of the kernel, whose fixed cost (~20 µs) the records then share
KERNEL_FROM = 16  # per-record problems listed in one answer


@dataclass(frozen=True)
class EdgeLimits:
    """`[api]`'s limits on what one request may hold."""

    max_records: int = 10_000
    max_record_bytes: int = 1024 * 1024
    max_depth: int = 32
    max_string_bytes: int = 64 * 1024


@dataclass
class Checked:
    """A request's records, as the log keeps them, and the ones quarantine will hold."""

    values: list[bytes]
    rejected: list[dict[str, Any]]

    @property
    def accepted(self) -> int:
        """Records that pass the contract (silver candidates)."""
        return len(self.values) - len(self.rejected)


def split_records(body: bytes, ndjson: bool) -> tuple[list[bytes], list[int] | None]:
    """The records of a body, and for NDJSON the line each was on (1-based)."""
    if ndjson:
        values: list[bytes] = []
        lines: list[int] = []
        for number, line in enumerate(body.split(b"\n"), start=1):
            if line.endswith(b"\r"):
                line = line[:-1]
            if line and not line.isspace():
                values.append(line)
                lines.append(number)
        return values, lines
    text = body[3:] if body.startswith(b"\xef\xbb\xbf") else body
    text = text.strip(b" \t\r\n")
    if text.startswith(b"{"):
        return [text], None
    if text.startswith(b"["):
        return _array(text), None
    raise ApiError(
        400,
        "the body must be one JSON object or a JSON array of objects (or NDJSON, sent as "
        "Content-Type: application/x-ndjson)",
    )


def _array(text: bytes) -> list[bytes]:
    from digital_finance.sources.json_arrays import array_chunk, native_array_chunk

    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, f"the body is not UTF-8 (invalid_utf8 at byte {exc.start}); nothing was kept"
        ) from None
    chunk = native_array_chunk(text) or array_chunk(text)
    if chunk is None:
        raise ApiError(400, "the body is not valid JSON: a JSON array of objects was expected")
    return [raw.encode("utf-8") for raw in chunk.table.column("raw").to_pylist()]


def check_records(
    values: list[bytes],
    lines: list[int] | None,
    spec: DatasetSpec,
    tz: str,
    limits: EdgeLimits,
) -> Checked:
    """The verdicts on `values`; `ApiError` 400 or 413 when the request cannot be taken."""
    if not values:
        raise ApiError(400, "the body holds no record")
    if len(values) > limits.max_records:
        raise ApiError(
            413,
            f"{len(values):,} records is over the limit of {limits.max_records:,} per request; "
            "split the request (or raise [api] max_records)",
        )
    reasons = (
        _one_by_one(values, spec, tz, limits)
        if len(values) < KERNEL_FROM
        else _by_kernel(values, spec, tz, limits)
    )
    refused: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for i, found in enumerate(reasons):
        if not found:
            continue
        entry = _entry(i, lines, found)
        (refused if found[0] in REFUSED else rejected).append(entry)
    for i, value in enumerate(values):
        if reasons[i] and reasons[i][0] in REFUSED:
            continue
        owned = _own_verdict(value, limits)
        if owned is not None:
            refused.append(_entry(i, lines, [owned]))
    if refused:
        refused.sort(key=lambda e: int(e["index"]))
        first = refused[0]
        where = f"line {first['line']}" if "line" in first else f"record {first['index']}"
        raise ApiError(
            400,
            f"{len(refused):,} of {len(values):,} records cannot be taken (first: {where}, "
            f"{first['reasons'][0]}); nothing of this request was kept",
            errors=refused[:MAX_LISTED],
        )
    return Checked(values, rejected)


def _entry(i: int, lines: list[int] | None, reasons: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"index": i, "reasons": reasons}
    if lines is not None:
        entry["line"] = lines[i]
    return entry


def _one_by_one(
    values: list[bytes], spec: DatasetSpec, tz: str, limits: EdgeLimits, *, kernel: bool = True
) -> list[list[str]]:
    """Each record's reasons: the kernel's `check_one` where it is sure, else the reference."""
    from digital_finance.contract.compiled_check import native_contract

    contract = native_contract(spec) if kernel and tz == "UTC" else None
    out: list[list[str]] = []
    for value in values:
        if len(value) > limits.max_record_bytes:
            out.append([RECORD_TOO_LARGE])
            continue
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            out.append([INVALID_UTF8])
            continue
        if _too_deep(value, text, limits.max_depth):
            out.append([NESTING_TOO_DEEP])
            continue
        if contract is not None:
            reasons, unsure = contract.verdict(value)
            if not unsure:
                out.append(reasons)
                continue
        verdict = reference.check_record(text, spec, tz)
        out.append(list(verdict.reasons) if isinstance(verdict, reference.Rejected) else [])
    return out


def _by_kernel(
    values: list[bytes], spec: DatasetSpec, tz: str, limits: EdgeLimits
) -> list[list[str]]:
    from digital_finance.contract.compiled_check import native_contract

    contract = native_contract(spec) if tz == "UTC" else None
    if contract is None:
        return _one_by_one(values, spec, tz, limits, kernel=False)
    out: list[list[str]] = [[] for _ in values]
    whole = all(len(v) <= limits.max_record_bytes for v in values)
    try:
        b"".join(values).decode("utf-8")  # one pass in C; record by record only when it fails
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    if whole and utf8:
        sound = list(range(len(values)))
    else:
        sound = []
        for i, value in enumerate(values):
            if len(value) > limits.max_record_bytes:
                out[i] = [RECORD_TOO_LARGE]
                continue
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                out[i] = [INVALID_UTF8]
                continue
            sound.append(i)
    verdicts = contract.verdicts([values[i] for i in sound]) if sound else []
    for i, (reasons, unsure) in zip(sound, verdicts, strict=True):
        out[i] = _one_by_one([values[i]], spec, tz, limits, kernel=False)[0] if unsure else reasons
    for i, value in enumerate(values):
        # the kernel's own depth limit is the contract's: the service's is checked here,
        # on every record not refused already (one that broke a field rule is UTF-8 JSON)
        if (not out[i] or out[i][0] not in REFUSED) and _too_deep(
            value, value.decode("utf-8"), limits.max_depth
        ):
            out[i] = [NESTING_TOO_DEEP]
    return out


def _too_deep(value: bytes, text: str, limit: int) -> bool:
    return value.count(b"[") + value.count(b"{") > limit and nesting_exceeds(text, limit)


def _own_verdict(value: bytes, limits: EdgeLimits) -> str | None:
    """`server_owned_field` or `string_too_long` for a well-formed record, else None.

    Only records that could break either rule are parsed: one naming a field that starts
    with an underscore, one longer than the string limit.
    """
    if (
        b'"_' not in value
        and b"\\u005" not in value  # "\u005f" is an underscore too
        and len(value) <= limits.max_string_bytes
    ):
        return None
    record = json.loads(value)
    if isinstance(record, dict) and SERVER_OWNED.intersection(record):
        return SERVER_OWNED_FIELD
    if len(value) > limits.max_string_bytes and _longest_string(record) > limits.max_string_bytes:
        return STRING_TOO_LONG
    return None


def _longest_string(value: object) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, dict):
        return max(
            (max(len(k.encode("utf-8")), _longest_string(v)) for k, v in value.items()), default=0
        )
    if isinstance(value, list):
        return max((_longest_string(v) for v in value), default=0)
    return 0

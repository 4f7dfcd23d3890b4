"""Compile a dataset's contract (`contract.schemas`) into one DuckDB query.

The query reads a relation `lines(file_ordinal, line_number, raw, utf8_ok)` and returns, per
non-blank line, the typed columns, the list of broken rules (`reasons`) and `needs_reference`.

DuckDB parses JSON numbers into doubles, so the exact text of a decimal is taken from the line
with a regular expression instead. That is only safe when it provably finds the top-level key;
where it cannot be sure (backslashes in the line, the key spelled twice, exotic number text) or
where DuckDB's JSON reader is more lenient than RFC 8259 (NaN, trailing commas, lone
surrogates, giant exponents), the row is flagged `needs_reference` and the runner hands it to
the pure-Python reference in `contract.reference`. The fast path never guesses.
"""

from __future__ import annotations

import json

from digital_finance.contract.schemas import (
    DUPLICATE_KEY,
    INVALID_JSON,
    INVALID_UTF8,
    NOT_AN_OBJECT,
    DatasetSpec,
    FieldKind,
    FieldSpec,
)

WS = "' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)"  # ASCII white space
_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
# Where DuckDB's JSON reader accepts more than RFC 8259, or may read a value differently from
# Python's, the reference decides. Nested objects go there too: the contract rejects duplicate
# keys at any depth, and DuckDB only lists the top-level keys.
_LENIENT_RISK = r"NaN|Infinity|,[ \t\r\n]*[}\]]|\\u[dD][89abAB]|[eE][+-]?[0-9]{3,}|/\*|//"
_ISO = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])"
    r"(?:\.([0-9]{1,6}))?([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?$"
)
_DECIMAL_PARTS = r"^-?([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$"


def sql_str(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _json_text(f: FieldSpec) -> str:
    return ident("j_" + f.name)


def _is_string(f: FieldSpec) -> str:
    return f"(left({_json_text(f)}, 1) = '\"')"


def _is_number(f: FieldSpec) -> str:
    return f"(left({_json_text(f)}, 1) IN ('-','0','1','2','3','4','5','6','7','8','9'))"


def _string_value(f: FieldSpec) -> str:
    return f"json_extract_string({_json_text(f)}, '$')"


def _trimmed(expr: str) -> str:
    # trim() with a character list is slow in DuckDB; most values need no trimming at all
    return (
        f"(CASE WHEN regexp_matches({expr}, '^[ \\t\\n\\v\\f\\r]|[ \\t\\n\\v\\f\\r]$') "
        f"THEN trim({expr}, {WS}) ELSE {expr} END)"
    )


class _FieldSql:
    """SQL for one field: its intermediate columns, its typed value and its reason."""

    def __init__(self, f: FieldSpec, source_tz: str) -> None:
        self.f = f
        self.tz = source_tz
        # columns computed stage by stage: a stage may use the columns of the stages before it
        self.prep: list[list[str]] = [[], [], [], []]
        self.value = "NULL"  # typed value, in the `final` stage
        self.valid = "TRUE"  # validity of a present value, in the `final` stage
        self.reference_needed = "FALSE"  # fast path cannot be sure, in the `final` stage
        getattr(self, "_" + f.kind.value)()

    @property
    def col(self) -> str:
        return "_" + self.f.name

    def reason(self) -> str:
        present = f"{_json_text(self.f)} IS NOT NULL"
        missing = sql_str(self.f.missing_reason) if self.f.required else "NULL"
        if self.f.kind is FieldKind.CURRENCY and self.f.default is not None:
            missing = "NULL"
        return (
            f"CASE WHEN NOT ({present}) THEN {missing} "
            f"WHEN NOT coalesce({self.valid}, FALSE) THEN {sql_str(self.f.invalid_reason)} END"
        )

    # --- one method per FieldKind ------------------------------------------------------
    def _integer(self) -> str:
        c, f = self.col, self.f
        self.prep[0].append(
            f"CASE WHEN {_is_string(f)} THEN {_string_value(f)} "
            f"WHEN {_is_number(f)} THEN {_json_text(f)} END AS {c}_txt"
        )
        lo = int(f.min_value) if f.min_value is not None else 0
        self.valid = (
            f"(regexp_full_match({c}_txt, '[0-9]+') AND TRY_CAST({c}_txt AS BIGINT) >= {lo})"
        )
        self.value = f"CASE WHEN {self.valid} THEN TRY_CAST({c}_txt AS BIGINT) END"
        return c

    def _decimal(self) -> str:
        c, f = self.col, self.f
        key = json.dumps(f.name)
        literal = sql_str(key)
        pattern = sql_str(re_escape(key) + r"[ \t\r\n]*:[ \t\r\n]*(" + _NUMBER + ")")
        exact = (
            f"CASE WHEN NOT has_backslash "
            f"AND length(raw) - length(replace(raw, {literal}, '')) = {len(key)} "
            f"THEN nullif(regexp_extract(raw, {pattern}, 1), '') END"
        )
        self.prep[0].append(
            f"CASE WHEN {_is_string(f)} THEN {_trimmed(_string_value(f))} "
            f"WHEN {_is_number(f)} THEN {exact} END AS {c}_txt"
        )
        self.prep[0].append(f"{_is_number(f)} AS {c}_is_num")
        self.prep[1].append(
            f"regexp_extract({c}_txt, {sql_str(_DECIMAL_PARTS)}, ['i','f','e']) AS {c}_parts"
        )
        digits = f"({c}_parts.i || {c}_parts.f)"
        exp = f"TRY_CAST(coalesce(nullif({c}_parts.e, ''), '0') AS INTEGER)"
        trailing = f"(length({digits}) - length(rtrim({digits}, '0')))"
        scale = f"(length({c}_parts.f) - {exp} - {trailing})"
        number = f"TRY_CAST({c}_txt AS DECIMAL(38,18))"
        lower = f.exclusive_min if f.exclusive_min is not None else 0
        upper = f.max_value
        exotic = f"(length({c}_txt) > 40 OR length({c}_parts.e) > 3)"
        self.reference_needed = (
            f"({c}_is_num AND {c}_txt IS NULL) OR ({c}_parts.i <> '' AND {exotic})"
        )
        self.valid = (
            f"({c}_parts.i <> '' AND {scale} <= {f.scale} "
            f"AND {number} > {lower} AND {number} <= {upper})"
        )
        self.value = (
            f"CASE WHEN {self.valid} THEN CAST({number} AS DECIMAL({f.precision},{f.scale})) END"
        )
        return c

    def _event_time(self) -> str:
        c, f = self.col, self.f
        self.prep[0].append(
            f"CASE WHEN {_is_string(f)} THEN {_trimmed(_string_value(f))} "
            f"WHEN {_is_number(f)} THEN {_json_text(f)} END AS {c}_txt"
        )
        self.prep[1].append(
            f"regexp_extract({c}_txt, {sql_str(_ISO)}, "
            f"['y','mo','d','h','mi','s','fr','z']) AS {c}_iso"
        )
        r = f"{c}_iso"
        local = (
            f"CASE WHEN {r}.y NOT IN ('', '0000') THEN TRY_CAST({r}.y || '-' || {r}.mo || '-' || "
            f"{r}.d || ' ' || {r}.h || ':' || {r}.mi || ':' || {r}.s || '.' || "
            f"rpad({r}.fr, 6, '0') AS TIMESTAMP) END"
        )
        self.prep[2].append(f"{local} AS {c}_local")
        # year 0000 can still land in year 1 after an offset; the reference decides those
        self.reference_needed = f"({r}.y = '0000')"
        offset_minutes = (
            f"(CASE WHEN left({r}.z, 1) = '-' THEN -1 ELSE 1 END) * "
            f"(CAST(substr({r}.z, 2, 2) AS INTEGER) * 60 + CAST(substr({r}.z, 5, 2) AS INTEGER))"
        )
        with_zone = (
            f"CASE WHEN {r}.z IN ('Z', 'z') THEN {c}_local "
            f"ELSE {c}_local - to_minutes({offset_minutes}) END"
        )
        naive = _local_to_utc(f"{c}_local", self.tz)
        n = f"TRY_CAST({c}_txt AS BIGINT)"
        epoch = (
            f"CASE WHEN regexp_full_match({c}_txt, '[0-9]{{1,18}}') THEN "
            f"CASE WHEN {n} < 100000000000 THEN make_timestamp({n} * 1000000) "
            f"WHEN {n} <= 253402300799999 THEN make_timestamp({n} * 1000) END END"
        )
        self.prep[3].append(
            f"CASE WHEN {c}_local IS NOT NULL THEN "
            f"CASE WHEN {r}.z <> '' THEN {with_zone} ELSE {naive} END "
            f"ELSE {epoch} END AS {c}_utc"
        )
        self.valid = (
            f"({c}_utc BETWEEN TIMESTAMP '0001-01-01 00:00:00' "
            f"AND TIMESTAMP '9999-12-31 23:59:59.999999')"
        )
        self.value = f"CASE WHEN {self.valid} THEN {c}_utc END"
        return c

    def _symbol(self) -> str:
        c, f = self.col, self.f
        self.prep[0].append(
            f"CASE WHEN {_is_string(f)} THEN {_trimmed(_string_value(f))} END AS {c}_txt"
        )
        self.valid = f"regexp_full_match({c}_txt, '[A-Za-z0-9.\\-]{{1,12}}')"
        self.value = f"CASE WHEN {self.valid} THEN upper({c}_txt) END"
        return c

    def _currency(self) -> str:
        c, f = self.col, self.f
        self.prep[0].append(
            f"CASE WHEN {_is_string(f)} THEN {_trimmed(_string_value(f))} END AS {c}_txt"
        )
        self.valid = f"regexp_full_match({c}_txt, '[A-Za-z]{{3}}')"
        default = sql_str(f.default) if f.default is not None else "NULL"
        self.value = (
            f"CASE WHEN {_json_text(f)} IS NULL THEN {default} "
            f"WHEN {self.valid} THEN upper({c}_txt) END"
        )
        return c

    def _identifier(self) -> str:
        c, f = self.col, self.f
        self.prep[0].append(
            f"CASE WHEN {_is_string(f)} THEN {_trimmed(_string_value(f))} "
            f"WHEN {_is_number(f)} AND regexp_full_match({_json_text(f)}, '-?[0-9]+') "
            f"THEN {_json_text(f)} END AS {c}_txt"
        )
        self.valid = f"({c}_txt <> '')"
        self.value = f"CASE WHEN {self.valid} THEN {c}_txt END"
        return c

    def _text(self) -> str:
        c, f = self.col, self.f
        self.prep[0].append(f"CASE WHEN {_is_string(f)} THEN {_string_value(f)} END AS {c}_txt")
        self.valid = f"({c}_txt IS NOT NULL)"
        self.value = f"{c}_txt"
        return c


def re_escape(text: str) -> str:
    """Escape a literal for RE2."""
    return "".join("\\" + ch if ch in r".^$*+?()[]{}|\\" else ch for ch in text)


def _local_to_utc(local: str, tz: str) -> str:
    """Naive local time in `tz` to naive UTC, resolving DST like Java and Python's fold=0.

    DuckDB (ICU) resolves an ambiguous wall time to the later instant; the contract wants the
    earlier one, so step back by the zone's possible DST shifts and keep the earliest instant
    that still shows the same wall time. In a gap ICU already uses the pre-transition offset.
    """
    if tz == "UTC":
        return local
    zone = sql_str(tz)
    c = f"({local} AT TIME ZONE {zone})"
    candidates = " ".join(
        f"WHEN timezone({zone}, {c} - INTERVAL {shift}) = {local} "
        f"THEN timezone('UTC', {c} - INTERVAL {shift})"
        for shift in ("2 HOUR", "1 HOUR", "30 MINUTE")
    )
    return f"(CASE {candidates} ELSE timezone('UTC', {c}) END)"


def compile_contract(spec: DatasetSpec, source_tz: str) -> str:
    """The DuckDB query that applies `spec` to the relation `lines`."""
    fields = [_FieldSql(f, source_tz) for f in spec.fields]
    paths = "[" + ", ".join(sql_str("$." + json.dumps(n)) for n in spec.field_names) + "]"
    # JSON null counts as absent: both become SQL NULL here
    values = ",\n      ".join(
        f"CAST(nullif(v[{i}], 'null') AS VARCHAR) AS {_json_text(f)}"
        for i, f in enumerate(spec.fields, start=1)
    )
    known = "[" + ", ".join(sql_str(n) for n in spec.field_names) + "]"
    patch = json.dumps({n: None for n in spec.field_names})
    stages = []
    previous = "fields"
    for level in range(4):
        cols = [col for fs in fields for col in fs.prep[level]]
        if cols:
            body = ",\n      ".join(cols)
            stages.append(f"prep{level} AS (\n  SELECT *,\n      {body}\n  FROM {previous}\n)")
            previous = f"prep{level}"
    prep_ctes = ", ".join(stages)
    field_reasons = "[" + ", ".join(fs.reason() for fs in fields) + "]"
    reasons = (
        f"CASE WHEN NOT utf8_ok THEN [{sql_str(INVALID_UTF8)}] "
        f"WHEN NOT is_json THEN [{sql_str(INVALID_JSON)}] "
        f"WHEN NOT is_object THEN [{sql_str(NOT_AN_OBJECT)}] "
        f"WHEN len(keys) <> len(list_distinct(keys)) THEN [{sql_str(DUPLICATE_KEY)}] "
        f"ELSE list_filter({field_reasons}, lambda x: x IS NOT NULL) END"
    )
    needs_reference = " OR ".join(f"coalesce({fs.reference_needed}, FALSE)" for fs in fields)
    typed = ",\n      ".join(f"{fs.value} AS {ident(fs.f.silver_name)}" for fs in fields)
    return f"""
WITH rec AS (
  SELECT file_ordinal, line_number, raw, utf8_ok FROM lines
  WHERE NOT regexp_full_match(raw, '[ \t\r\n]*')
), parsed AS (
  SELECT *,
    utf8_ok AND json_valid(raw) AS is_json,
    utf8_ok AND (regexp_matches(raw, {sql_str(_LENIENT_RISK)})
      OR regexp_matches(raw, '[{{][^{{]*[{{]')) AS lenient_risk,
    contains(raw, chr(92)) AS has_backslash
  FROM rec
), objects AS (
  SELECT *,
    is_json AND regexp_matches(raw, '^[ \t\r\n]*[{{]') AS is_object
  FROM parsed
), extracted AS (
  SELECT *,
    CASE WHEN is_object THEN json_extract(raw, {paths}) END AS v,
    CASE WHEN is_object THEN json_keys(raw) END AS keys
  FROM objects
), fields AS (
  SELECT *,
      {values}
  FROM extracted
), {prep_ctes}
SELECT
  file_ordinal, line_number, raw,
  lenient_risk OR (is_object AND ({needs_reference})) AS needs_reference,
  {reasons} AS reasons,
      {typed},
  CASE WHEN is_object AND len(list_filter(keys, lambda k: NOT list_contains({known}, k))) > 0
       THEN json_merge_patch(raw, {sql_str(patch)}) END AS _rescued
FROM {previous}
"""

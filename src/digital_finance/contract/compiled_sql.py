"""Compile a dataset's contract (`contract.schemas`) into one DuckDB query.

The query reads a relation `lines(file_ordinal, line_number, raw, line_reason)` and returns, per
non-blank line, the typed columns, the list of broken rules (`reasons`) and `needs_reference`.

DuckDB parses JSON numbers into doubles, so the exact text of a decimal is taken from the line
with a regular expression instead. That is only safe when it provably finds the top-level key;
where it cannot be sure (escaped quotes in the line, nested objects, exotic number text) or
where DuckDB's JSON reader is more lenient than RFC 8259 (NaN, trailing commas, lone
surrogates, giant exponents), the row is flagged `needs_reference` and the runner hands it to
the pure-Python reference in `contract.reference`. The fast path never guesses.
"""

from __future__ import annotations

import json

from digital_finance.contract.schemas import (
    DUPLICATE_KEY,
    INVALID_JSON,
    MAX_NESTING_DEPTH,
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


# The first character of a JSON value tells its type; `ascii()` reads it without copying
# (an IN list here would become a join).
def _is_string(f: FieldSpec) -> str:
    return f"(ascii({_json_text(f)}) = 34)"


def _is_number(f: FieldSpec) -> str:
    j = _json_text(f)
    return f"(ascii({j}) = 45 OR ascii({j}) BETWEEN 48 AND 57)"


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
        self.prep: list[list[str]] = [[], [], [], [], []]
        self.value = "NULL"  # typed value of a valid field, in the `final` stage
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
        self.value = f"TRY_CAST({c}_txt AS BIGINT)"
        return c

    def _decimal(self) -> str:
        c, f = self.col, self.f
        key = json.dumps(f.name)
        pattern = sql_str(re_escape(key) + r"[ \t\r\n]*:[ \t\r\n]*(" + _NUMBER + ")")
        # Without an escaped quote every quote delimits a string, so `"price":` is a key; with
        # no nested object (those rows go to the reference) it is the top-level key, and a
        # second one would be a duplicate key, which rejects the record anyway.
        exact = (
            f"CASE WHEN NOT has_escaped_quote "
            f"THEN nullif(regexp_extract(raw, {pattern}, 1), '') END"
        )
        self.prep[0].append(
            f"CASE WHEN {_is_string(f)} THEN {_trimmed(_string_value(f))} "
            f"WHEN {_is_number(f)} THEN {exact} END AS {c}_txt"
        )
        self.prep[0].append(f"{_is_number(f)} AS {c}_is_num")
        int_digits = f.precision - f.scale
        plain = sql_str(f"-?[0-9]{{1,{int_digits}}}(\\.[0-9]{{1,{f.scale}}})?")
        self.prep[1].append(f"regexp_full_match({c}_txt, {plain}) AS {c}_plain")
        # the general form (exponents, trailing zeros, long texts) is rare: parse it only there
        self.prep[1].append(
            f"CASE WHEN NOT {c}_plain THEN "
            f"regexp_extract({c}_txt, {sql_str(_DECIMAL_PARTS)}, ['i','f','e']) END AS {c}_parts"
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
            f"({c}_is_num AND {c}_txt IS NULL) "
            f"OR (NOT {c}_plain AND {c}_parts.i <> '' AND {exotic})"
        )
        plain_value = f"TRY_CAST({c}_txt AS DECIMAL({f.precision},{f.scale}))"
        self.valid = (
            f"(CASE WHEN {c}_plain THEN {plain_value} > {lower} AND {plain_value} <= {upper} "
            f"ELSE ({c}_parts.i <> '' AND {scale} <= {f.scale} "
            f"AND {number} > {lower} AND {number} <= {upper}) END)"
        )
        self.value = (
            f"CASE WHEN {c}_plain THEN {plain_value} "
            f"ELSE TRY_CAST({number} AS DECIMAL({f.precision},{f.scale})) END"
        )
        return c

    def _event_time(self) -> str:
        c, f = self.col, self.f
        self.prep[0].append(
            f"CASE WHEN {_is_string(f)} THEN {_trimmed(_string_value(f))} "
            f"WHEN {_is_number(f)} THEN {_json_text(f)} END AS {c}_txt"
        )
        t = f"{c}_txt"
        self.prep[1].append(f"regexp_full_match({t}, {sql_str(_ISO)}) AS {c}_iso")
        # the format is checked, so the parts sit at fixed places: no capture groups needed
        zone = (
            f"CASE WHEN right({t}, 1) IN ('Z', 'z') THEN 'Z' "
            f"WHEN substr({t}, -6, 1) IN ('+', '-') THEN right({t}, 6) ELSE '' END"
        )
        self.prep[2].append(f"CASE WHEN {c}_iso THEN {zone} END AS {c}_zone")
        frac = (
            f"CASE WHEN substr({t}, 20, 1) = '.' "
            f"THEN substr({t}, 21, length({t}) - 20 - length({c}_zone)) ELSE '' END"
        )
        local = (
            f"CASE WHEN {c}_iso AND left({t}, 4) <> '0000' THEN TRY_CAST(substr({t}, 1, 10) "
            f"|| ' ' || substr({t}, 12, 8) || '.' || rpad({frac}, 6, '0') AS TIMESTAMP) END"
        )
        self.prep[3].append(f"{local} AS {c}_local")
        # year 0000 can still land in year 1 after an offset; the reference decides those
        self.reference_needed = f"({c}_iso AND left({t}, 4) = '0000')"
        z = f"{c}_zone"
        offset_minutes = (
            f"(CASE WHEN left({z}, 1) = '-' THEN -1 ELSE 1 END) * "
            f"(CAST(substr({z}, 2, 2) AS INTEGER) * 60 + CAST(substr({z}, 5, 2) AS INTEGER))"
        )
        with_zone = (
            f"CASE WHEN {z} = 'Z' THEN {c}_local ELSE {c}_local - to_minutes({offset_minutes}) END"
        )
        naive = local_to_utc(f"{c}_local", self.tz)
        n = f"TRY_CAST({c}_txt AS BIGINT)"
        epoch = (
            f"CASE WHEN regexp_full_match({c}_txt, '[0-9]{{1,18}}') THEN "
            f"CASE WHEN {n} < 100000000000 THEN make_timestamp({n} * 1000000) "
            f"WHEN {n} <= 253402300799999 THEN make_timestamp({n} * 1000) END END"
        )
        self.prep[4].append(
            f"CASE WHEN {c}_local IS NOT NULL THEN "
            f"CASE WHEN {z} <> '' THEN {with_zone} ELSE {naive} END "
            f"ELSE {epoch} END AS {c}_utc"
        )
        self.valid = (
            f"({c}_utc BETWEEN TIMESTAMP '0001-01-01 00:00:00' "
            f"AND TIMESTAMP '9999-12-31 23:59:59.999999')"
        )
        self.value = f"{c}_utc"
        return c

    def _symbol(self) -> str:
        c, f = self.col, self.f
        self.prep[0].append(
            f"CASE WHEN {_is_string(f)} THEN {_trimmed(_string_value(f))} END AS {c}_txt"
        )
        self.valid = f"regexp_full_match({c}_txt, '[A-Za-z0-9.\\-]{{1,12}}')"
        self.value = f"upper({c}_txt)"
        return c

    def _currency(self) -> str:
        c, f = self.col, self.f
        self.prep[0].append(
            f"CASE WHEN {_is_string(f)} THEN {_trimmed(_string_value(f))} END AS {c}_txt"
        )
        self.valid = f"regexp_full_match({c}_txt, '[A-Za-z]{{3}}')"
        default = sql_str(f.default) if f.default is not None else "NULL"
        self.value = f"CASE WHEN {_json_text(f)} IS NULL THEN {default} ELSE upper({c}_txt) END"
        return c

    def _identifier(self) -> str:
        c, f = self.col, self.f
        self.prep[0].append(
            f"CASE WHEN {_is_string(f)} THEN {_trimmed(_string_value(f))} "
            f"WHEN {_is_number(f)} AND regexp_full_match({_json_text(f)}, '-?[0-9]+') "
            f"THEN {_json_text(f)} END AS {c}_txt"
        )
        self.valid = f"({c}_txt <> '')"
        self.value = f"{c}_txt"
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


def local_to_utc(local: str, tz: str) -> str:
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
    # how many contract keys the object names (a key with a null value counts): more keys
    # than that means unknown fields to rescue
    known_present = " + ".join(
        f"(v[{i}] IS NOT NULL)::INTEGER" for i in range(1, len(spec.fields) + 1)
    )
    patch = json.dumps({n: None for n in spec.field_names})
    stages = []
    previous = "fields"
    for level in range(5):
        cols = [col for fs in fields for col in fs.prep[level]]
        if cols:
            body = ",\n      ".join(cols)
            stages.append(f"prep{level} AS (\n  SELECT *,\n      {body}\n  FROM {previous}\n)")
            previous = f"prep{level}"
    prep_ctes = ", ".join(stages)
    field_checks = ",\n      ".join(f"{fs.reason()} AS {ident('r_' + fs.f.name)}" for fs in fields)
    reason_cols = [ident("r_" + fs.f.name) for fs in fields]
    all_valid = " AND ".join(f"{r} IS NULL" for r in reason_cols)
    reasons = (
        "CASE WHEN line_reason IS NOT NULL THEN [line_reason] "
        f"WHEN NOT is_json THEN [{sql_str(INVALID_JSON)}] "
        f"WHEN NOT is_object THEN [{sql_str(NOT_AN_OBJECT)}] "
        f"WHEN duplicate_key THEN [{sql_str(DUPLICATE_KEY)}] "
        f"WHEN {all_valid} THEN []::VARCHAR[] "
        f"ELSE list_filter([{', '.join(reason_cols)}], lambda x: x IS NOT NULL) END"
    )
    needs_reference = " OR ".join(f"coalesce({fs.reference_needed}, FALSE)" for fs in fields)
    typed = ",\n      ".join(
        f"CASE WHEN record_ok AND {ident('r_' + fs.f.name)} IS NULL THEN {fs.value} END "
        f"AS {ident(fs.f.silver_name)}"
        for fs in fields
    )
    return f"""
WITH rec AS (
  SELECT file_ordinal, line_number, raw, line_reason IS NULL AS read_whole, line_reason
  FROM lines
  -- an oversize line is decided by its size: its blank first bytes may hide a record
  WHERE line_reason IS NOT NULL OR NOT regexp_full_match(raw, '[ \t\r\n]*')
), parsed AS (
  SELECT *,
    read_whole AND json_valid(raw) AS is_json,
    read_whole AND (
      regexp_matches(raw, {sql_str(_LENIENT_RISK + "|[{][^{]*[{]")})
      -- more brackets than the nesting limit: the reference measures the depth
      OR strlen(raw) - strlen(replace(replace(raw, '[', ''), '{{', '')) > {MAX_NESTING_DEPTH}
    ) AS lenient_risk,
    contains(raw, chr(92) || '"') AS has_escaped_quote
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
      -- a repeated contract key also makes the key list longer than the keys found, so the
      -- costly distinct count is only needed for the few objects with extra keys
      is_object AND len(keys) > {known_present}
        AND len(keys) <> len(list_distinct(keys)) AS duplicate_key,
      is_object AND len(keys) > {known_present} AS has_unknown,
      {values}
  FROM extracted
), {prep_ctes}, checked AS (
  SELECT *,
      is_object AND NOT duplicate_key AS record_ok,
      {field_checks}
  FROM {previous}
)
SELECT
  file_ordinal, line_number, raw,
  lenient_risk OR (is_object AND ({needs_reference})) AS needs_reference,
  {reasons} AS reasons,
      {typed},
  CASE WHEN record_ok AND has_unknown THEN json_merge_patch(raw, {sql_str(patch)}) END
    AS _rescued
FROM checked
"""

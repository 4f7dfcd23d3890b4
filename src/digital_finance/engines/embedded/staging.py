"""Stage one batch in DuckDB: parse every file, apply the contract and the expectations.

Nothing is committed here. The staged batch answers the questions the runner asks before it
commits anything (did a `fail` rule fire? how many records broke each rule?) and then streams
each output table as Arrow record batches. DuckDB spills to the batch's temp folder when the
batch is larger than its memory limit, which is what bounds memory at 10M records.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from digital_finance.arrow_arrays import constant_int32, int_array, large_strings
from digital_finance.contract import reference
from digital_finance.contract.compiled_sql import compile_contract, ident, local_to_utc, sql_str
from digital_finance.contract.native_check import NativeContract, naive_column
from digital_finance.contract.schemas import DatasetSpec, FieldKind
from digital_finance.definition.expectations import Action, Expectation, ExpectationError
from digital_finance.definition.rules import DUCKDB, LINEAGE, QUARANTINE, LatestWins, count_rules
from digital_finance.engines.embedded.arrow_schemas import sql_type
from digital_finance.engines.embedded.bronze_ahead import BronzeAhead
from digital_finance.runs.plan import PlannedFile
from digital_finance.sources.base import FileSource, Source
from digital_finance.sources.line_chunk import LineChunk
from digital_finance.sources.prefetch import prefetch

SCAN_BATCH_ROWS = 16 * 1024
# a record's place in the batch packed into 64 bits below its event time: the file's
# ordinal, then its line
_LINE_BITS = 40
_FILE_BITS = 23


def _with_ordinal(decided: pa.Table, ordinal: int) -> pa.Table:
    return decided.append_column("file_ordinal", constant_int32(ordinal, decided.num_rows))


@dataclass(frozen=True)
class _PartCounts:
    """Staged records of one file part: all of them, those that passed the contract, and
    those that broke it (a record whose reasons are unknown is in neither)."""

    records: int
    valid: int
    rejected: int
    first_line: int | None
    last_line: int | None
    numbered: int  # records with a line number (all of them, wherever the batch made them)


class StagedDataset:
    """One dataset of a batch, parsed and checked inside DuckDB."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        spec: DatasetSpec,
        source_tz: str,
        expectations: Sequence[Expectation],
        native: NativeContract | None = None,
        files: Source | None = None,
        bronze: BronzeAhead | None = None,
    ) -> None:
        self.con = con
        # bronze's files, written from the chunks as they are staged (the kernel's path)
        self.bronze_ahead = bronze if native is not None else None
        self.source: Source = files or FileSource()
        self.native = native
        self.spec = spec
        self.tz = source_tz
        self.user_rules = [e for e in expectations if not e.builtin]
        self.builtin_actions = {e.name: e.action for e in expectations if e.builtin}
        self.parsed = f"parsed_{spec.name}"
        self.files = f"files_{spec.name}"
        self.parts = 0  # file parts (or stream partitions) of the batch, once loaded
        self._from_files = False  # whether any part is a file (not a stream's records)
        self._untouched = True  # nothing loaded: the questions below need no query
        self._counts: dict[int, _PartCounts] | None = None  # `_part_counts`, once asked
        self.checked = f"checked_{spec.name}"
        self._sql = compile_contract(spec, source_tz)
        if native is None:
            empty = pa.table(
                {
                    "line_number": int_array([], pa.int64()),
                    "raw": large_strings([]),
                    "line_reason": pa.nulls(0, pa.string()),
                    "file_ordinal": int_array([], pa.int32()),
                }
            )
            con.register("lines", empty)
            con.execute(f"CREATE TABLE {self.parsed} AS {self._sql} LIMIT 0")
        else:
            # the columns the compiled query would make, declared: binding that large
            # query costs a fifth of a second per dataset, for nothing on this path
            typed = ", ".join(f"{ident(f.silver_name)} {sql_type(f)}" for f in spec.fields)
            con.execute(
                f"CREATE TABLE {self.parsed} (file_ordinal INTEGER, line_number BIGINT, "
                f"raw VARCHAR, needs_reference BOOLEAN, reasons VARCHAR[], {typed}, "
                "_rescued VARCHAR)"
            )
        con.execute(
            f"CREATE TABLE {self.files} (file_ordinal INTEGER, source_file VARCHAR, source VARCHAR)"
        )
        self._create_checked_view()
        self._insert_decided = self._native_insert() if native is not None else ""

    def _native_insert(self) -> str:
        """SQL that moves the kernel's verdicts of a chunk into the staging table.

        Blank lines are dropped here, and naive event times get their zone's offset with the
        same DuckDB expression the SQL contract uses, so both paths place them alike.
        """
        typed = []
        for f in self.spec.fields:
            col = ident(f.silver_name)
            if f.kind is FieldKind.EVENT_TIME and self.tz != "UTC":
                utc = local_to_utc(col, self.tz)
                col = f"CASE WHEN {ident(naive_column(f))} THEN {utc} ELSE {col} END AS {col}"
            typed.append(col)
        decided = (
            f"SELECT file_ordinal, line_number, raw, needs_reference, reasons, "
            f"{', '.join(typed)}, _rescued FROM decided WHERE keep"
        )
        if self.bronze_ahead is None:
            return f"INSERT INTO {self.parsed} BY NAME {decided}"
        # bronze is written from the chunks: the text stays only where quarantine or the
        # reference may need it (a batch's text was most of staging's memory)
        return (
            f"INSERT INTO {self.parsed} BY NAME SELECT * REPLACE "
            f"(CASE WHEN {self._may_need_text()} THEN raw END AS raw) FROM ({decided})"
        )

    def _may_need_text(self) -> str:
        """SQL: whether a decided record's text may be read again after staging: it broke
        the contract, or the reference decides it. With a `quarantine` expectation, or one
        that reads `raw`, every text is kept: an expectation is evaluated again at each
        question (`checked` is a view), and one that reads the clock or `random()` may
        pass now and fail at quarantine's commit; the record must have its text then."""
        if any(e.action is Action.QUARANTINE for e in self.user_rules) or any(
            re.search(r"\braw\b", e.condition or "", re.IGNORECASE) for e in self.user_rules
        ):
            return "TRUE"
        return "len(reasons) > 0 OR needs_reference"

    def _create_checked_view(self) -> None:
        rules = [(e.name, e.condition or "") for e in self.user_rules]
        failed = QUARANTINE.failed_rules(rules, DUCKDB)
        try:
            self.con.execute(
                f"CREATE VIEW {self.checked} AS "
                f"SELECT *, rowid AS _row, {failed} AS failed_rules FROM {self.parsed}"
            )
            self.con.execute(f"SELECT * FROM {self.checked} LIMIT 0").fetchall()
        except duckdb.Error as exc:
            columns = [f.silver_name for f in self.spec.fields]
            raise ExpectationError.unusable(self.spec.name, self.user_rules, columns, exc) from exc

    def load_files(self, files: Sequence[PlannedFile], done: Callable[[PlannedFile], None]) -> None:
        """Parse the batch's file parts into the staging table; `done` after each part."""
        self.parts = len(files)
        self._from_files = any(part.is_file for part in files)
        if not files:
            # a dataset the batch has no part of (a stream of one dataset, every trigger):
            # its questions below are answered without asking DuckDB
            return
        self._untouched = False
        self._counts = None
        if self.native is None:
            for part in files:
                self.load(part)
                done(part)
            return
        for part in files:
            self.con.execute(
                f"INSERT INTO {self.files} VALUES (?, ?, ?)",
                [part.ordinal, part.file.path, part.source],
            )
        # One INSERT over a stream of every file's verdicts: DuckDB's cost per statement is
        # far above its cost per row, and the stream keeps memory to a few chunks.
        native = self.native
        schema = _with_ordinal(native.empty(), 0).schema
        failure: list[BaseException] = []

        def chunks() -> Iterator[tuple[PlannedFile, LineChunk | None]]:
            for part in files:
                for chunk in self.source.read(part):
                    yield part, chunk
                yield part, None  # the part is read

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                # the next chunk is read while this one is decided and stored
                for part, chunk in prefetch(chunks()):
                    if chunk is None:
                        done(part)
                        continue
                    decided = native.decide(chunk.table)
                    if self.bronze_ahead is not None:
                        self.bronze_ahead.add(
                            decided.column("raw"),
                            decided.column("line_number"),
                            decided.column("keep"),
                            part.source,
                            part.file.path,
                        )
                    yield from _with_ordinal(decided, part.ordinal).to_batches()
            except BaseException as exc:  # re-raised below as itself, not as a DuckDB error
                failure.append(exc)
                raise

        self.con.register("decided", pa.RecordBatchReader.from_batches(schema, batches()))
        try:
            self.con.execute(self._insert_decided)
            if self.bronze_ahead is not None:
                self.bronze_ahead.end()  # its last rows are written while the batch goes on
        except duckdb.Error:
            if failure:
                raise failure[0] from None
            raise
        finally:
            self.con.unregister("decided")

    def load(self, part: PlannedFile) -> None:
        """Parse one file part into the staging table with the SQL contract."""
        self._untouched = False
        self._counts = None
        self.con.execute(
            f"INSERT INTO {self.files} VALUES (?, ?, ?)",
            [part.ordinal, part.file.path, part.source],
        )
        for chunk in self.source.read(part):
            table = chunk.table.append_column(
                "file_ordinal", constant_int32(part.ordinal, chunk.num_rows)
            )
            # DuckDB scans an Arrow table one record batch per thread: hand it many
            lines = pa.Table.from_batches(table.combine_chunks().to_batches(SCAN_BATCH_ROWS))
            self.con.register("lines", lines)
            self.con.execute(f"INSERT INTO {self.parsed} {self._sql}")
            self.con.unregister("lines")

    def resolve_with_reference(self) -> int:
        """Hand the rows the fast path could not be sure of to the reference; returns how many."""
        if self._untouched:
            return 0
        rows = self.con.execute(
            f"SELECT file_ordinal, line_number, raw FROM {self.parsed} WHERE needs_reference"
        ).fetchall()
        if not rows:
            return 0
        columns: dict[str, list[object]] = {
            "file_ordinal": [],
            "line_number": [],
            "raw": [],
            "needs_reference": [],
            "reasons": [],
            "_rescued": [],
        }
        for f in self.spec.fields:
            columns[f.silver_name] = []
        for ordinal, line, raw in rows:
            verdict = reference.check_record(raw, self.spec, self.tz)
            columns["file_ordinal"].append(ordinal)
            columns["line_number"].append(line)
            columns["raw"].append(raw)
            columns["needs_reference"].append(False)
            if isinstance(verdict, reference.Rejected):
                columns["reasons"].append(list(verdict.reasons))
                columns["_rescued"].append(None)
                for f in self.spec.fields:
                    columns[f.silver_name].append(None)
            else:
                columns["reasons"].append([])
                columns["_rescued"].append(verdict.rescued)
                for f in self.spec.fields:
                    value = verdict.values.get(f.silver_name)
                    if f.kind is FieldKind.DECIMAL and value is not None:
                        value = str(value)  # exact, cast by DuckDB below
                    if f.kind is FieldKind.EVENT_TIME and value is not None:
                        value = value.replace(tzinfo=None)  # type: ignore[attr-defined]
                    columns[f.silver_name].append(value)
        resolved = pa.table(columns)
        self.con.register("resolved", resolved)
        casts = ", ".join(
            f"CAST({ident(f.silver_name)} AS {sql_type(f)}) AS {ident(f.silver_name)}"
            for f in self.spec.fields
        )
        self._counts = None
        self.con.execute(f"DELETE FROM {self.parsed} WHERE needs_reference")
        self.con.execute(
            f"INSERT INTO {self.parsed} BY NAME SELECT file_ordinal, line_number, raw, "
            f"needs_reference, CAST(reasons AS VARCHAR[]) AS reasons, {casts}, _rescued "
            f"FROM resolved"
        )
        self.con.unregister("resolved")
        return len(rows)

    # --- questions asked before anything is committed --------------------------------
    def rule_counts(self) -> list[tuple[str, Action, int]]:
        """(rule, action, failures), as `definition.rules.count_rules` orders them."""
        if self._untouched:
            return count_rules({}, {}, self.builtin_actions, self.user_rules)
        contract = self._failures(self.parsed, "reasons")
        # without expectations `failed_rules` is an empty list on every row
        user = self._failures(self.checked, "failed_rules") if self.user_rules else {}
        return count_rules(contract, user, self.builtin_actions, self.user_rules)

    def _failures(self, relation: str, column: str) -> dict[str, int]:
        rows = self.con.execute(
            f"SELECT r, count(*) FROM (SELECT unnest({column}) AS r FROM {relation}) GROUP BY r"
        ).fetchall()
        return {str(rule): int(n) for rule, n in rows}

    def valid_records(self) -> int:
        """Records that passed the contract: an upper bound of the batch's silver candidates."""
        if self._untouched:
            return 0
        return sum(c.valid for c in self._part_counts().values())

    def _part_counts(self) -> dict[int, _PartCounts]:
        """Records per file part (ordinal): the batch's counts, all from one scan."""
        if self._counts is None:
            rows = (
                self.con.cursor()
                .execute(
                    "SELECT file_ordinal, count(*), count(*) FILTER (WHERE len(reasons) = 0), "
                    "count(*) FILTER (WHERE len(reasons) > 0), min(line_number), "
                    f"max(line_number), count(line_number) FROM {self.parsed} "
                    "GROUP BY file_ordinal"
                )
                .fetchall()
            )
            self._counts = {
                int(o): _PartCounts(int(n), int(v), int(r), first, last, int(numbered))
                for o, n, v, r, first, last, numbered in rows
            }
        return self._counts

    def passed_values(self, columns: Sequence[str]) -> pa.Table | None:
        """The distinct values of `columns` over the records that passed the contract and
        the quarantine expectations; None when the batch has no part of the dataset."""
        if self._untouched:
            return None
        chosen = ", ".join(ident(c) for c in columns)
        passed = QUARANTINE.passes(self._quarantine_names(), DUCKDB)
        return (
            self.con.cursor()
            .sql(f"SELECT DISTINCT {chosen} FROM {self.checked} WHERE {passed}")
            .to_arrow_table()
        )

    def records(self) -> int:
        """Non-blank records staged."""
        if self._untouched:
            return 0
        return sum(c.records for c in self._part_counts().values())

    # --- outputs --------------------------------------------------------------------
    def _quarantine_names(self) -> list[str]:
        return [e.name for e in self.user_rules if e.action is Action.QUARANTINE]

    def bronze(self, batch_id: int, run_id: str, ingested_at: str) -> str:
        """SQL of every staged record as received, with its origin."""
        return (
            f"SELECT p.raw AS record, f.source, f.source_file, p.line_number, "
            f"{batch_id}::BIGINT AS _batch_id, {sql_str(run_id)} AS _run_id, "
            f"{sql_str(ingested_at)}::TIMESTAMPTZ AS _ingested_at "
            f"FROM {self.parsed} p JOIN {self.files} f USING (file_ordinal)"
        )

    def quarantine(
        self, batch_id: int, run_id: str, ingested_at: str, contract_step: str, rules_step: str
    ) -> str:
        """SQL of the records that broke the contract or a quarantine expectation."""
        names = self._quarantine_names()
        return (
            f"SELECT f.source_file, p.line_number, "
            f"{QUARANTINE.reason(names, DUCKDB)} AS reason, "
            f"{QUARANTINE.reasons(names, DUCKDB)} AS reasons, "
            f"p.raw, {QUARANTINE.step(contract_step, rules_step, DUCKDB)} AS step, "
            f"{batch_id}::BIGINT AS _batch_id, {sql_str(run_id)} AS _run_id, "
            f"{sql_str(ingested_at)}::TIMESTAMPTZ AS _quarantined_at "
            f"FROM {self.checked} p JOIN {self.files} f USING (file_ordinal) "
            f"WHERE {QUARANTINE.quarantined(names, DUCKDB)}"
        )

    def wholly_rejected(self) -> list[tuple[str, int]]:
        """Files of which every record broke the contract: (path, records), in file order.

        A file given as the wrong dataset (`--funds stocks.json`) looks like this; the run
        says so, since nothing else would.
        """
        if not self._from_files:
            return []
        counts = self._part_counts()
        files = self.con.execute(
            f"SELECT file_ordinal, source_file FROM {self.files} WHERE source = 'file' "
            "ORDER BY file_ordinal"
        ).fetchall()
        return [
            (str(path), c.records)
            for ordinal, path in files
            if (c := counts.get(int(ordinal))) is not None and c.records == c.rejected
        ]

    def _winner_order(self, rule: LatestWins) -> str:
        """SQL: the value whose largest row wins its key within the batch, `rule.batch_order()`.

        One 128-bit integer (the event time's microseconds, then the file, then the line)
        where they fit in it, which DuckDB compares at 0.6 times the cost of the three as a
        struct (50 ms of a 1M-record batch's silver); the struct otherwise. Both order alike
        (`tests/unit/test_staging_winner_order.py`).
        """
        columns = ", ".join(ident(c) for c in rule.batch_order())
        as_struct = f"({columns})"
        event = next((f for f in self.spec.fields if f.silver_name == rule.event_time), None)
        if rule.receipt_in_batch != ("file_ordinal", "line_number") or event is None:
            return as_struct
        if event.kind is not FieldKind.EVENT_TIME or not event.required:
            return as_struct  # a null time has its own place in a struct's order
        if not self._fits_packed(self._part_counts()):
            return as_struct
        return (
            f"(epoch_us({ident(rule.event_time)})::HUGEINT * {2**64} "
            f"+ (file_ordinal::BIGINT * {2**_LINE_BITS} + line_number))"
        )

    @staticmethod
    def _fits_packed(parts: dict[int, _PartCounts]) -> bool:
        """Whether every part's ordinal and lines fit in the packed order's bits."""
        for ordinal, counts in parts.items():
            first, last = counts.first_line, counts.last_line
            if first is None or last is None or not 0 <= ordinal < 2**_FILE_BITS:
                return False
            if counts.numbered != counts.records:  # a null line has its own place in a struct
                return False
            if first < 0 or last >= 2**_LINE_BITS:
                return False
        return bool(parts)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own to the staged batch, for one output query."""
        return self.con.cursor()

    def latest(self, batch_id: int, ingested_at: str, rule: LatestWins) -> str:
        """SQL of the batch's silver candidates, one per key (latest, then received last)."""
        typed = ", ".join(
            (
                f"{ident(f.silver_name)}::TIMESTAMPTZ AS {ident(f.silver_name)}"
                if f.kind is FieldKind.EVENT_TIME
                else ident(f.silver_name)
            )
            for f in self.spec.fields
        )
        keys = ", ".join(ident(k) for k in rule.key)
        # The winner of each key is found on narrow rows (its rowid by the largest
        # (event time, file, line), which is unique), then joined back: a window over the
        # full rows would carry every column through its sort.
        passed = QUARANTINE.passes(self._quarantine_names(), DUCKDB)
        winners = (
            f"SELECT arg_max(_row, {self._winner_order(rule)}) AS _winner "
            f"FROM {self.checked} WHERE {passed} GROUP BY {keys}"
        )
        lineage = ", ".join(f"{ident(staged)} AS {ident(col)}" for col, staged in LINEAGE.columns)
        return (
            f"SELECT {typed}, _rescued, {lineage}, {batch_id}::BIGINT AS _batch_id, "
            f"{sql_str(ingested_at)}::TIMESTAMPTZ AS _ingested_at "
            f"FROM {self.parsed} p JOIN {self.files} f USING (file_ordinal) "
            f"JOIN ({winners}) w ON p.rowid = w._winner"
        )

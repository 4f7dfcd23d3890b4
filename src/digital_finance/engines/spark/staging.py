"""Stage one dataset of a batch on Spark: read, apply the contract, evaluate the expectations.

Reading and the contract run in Python workers (`mapInArrow`), one task per piece of a file
(`sources.file_pieces`: a large file is read by every core, its lines numbered as if read
whole), with the project's own file reader and the embedded engine's fast contract
(`contract.compiled_check`: the native kernel where the workers have it, else the compiled
DuckDB query, with the reference deciding the rows either is unsure of). A stream batch's
records (a Kafka micro-batch, `sources.stream_records`) are checked the same way, a message
as a line and its offset as the line number. Spark's JSON functions are not used: they read
numbers as doubles and accept NaN, single quotes, duplicate keys and trailing garbage
(docs/SPARK_PLAN.md §3). Everything after (expectations, quarantine, de-duplication) is
Spark SQL over the typed columns.

The staged rows are persisted, so the outputs (bronze, quarantine, silver) and the rule
counts read them once instead of parsing the files again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

import pyarrow as pa
from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.window import Window

from digital_finance.contract.arrow_records import checked_schema
from digital_finance.contract.compiled_check import check_lines_fast
from digital_finance.contract.schemas import DatasetSpec
from digital_finance.definition.expectations import Action, Expectation, ExpectationError
from digital_finance.definition.rules import LINEAGE, QUARANTINE, SPARK, LatestWins, count_rules
from digital_finance.engines.spark.session import session_setting
from digital_finance.runs.plan import PlannedFile
from digital_finance.runs.report import RuleFailures
from digital_finance.sources.base import FileSource
from digital_finance.sources.discovery import InputFile
from digital_finance.sources.file_pieces import pieces
from digital_finance.sources.input_limits import InputLimits
from digital_finance.sources.stream_records import message_chunk

ANSI = "spark.sql.ansi.enabled"
# measured at 1M stocks: compressing the staged copy took 2 s of the 4.5 s it cost to build,
# and saved a tenth of its size (94 MB against 85 MB): it lives for one batch
CACHE_COMPRESSED = "spark.sql.inMemoryColumnarStorage.compressed"
# measured: 4 MB chunks spent a quarter of the time planning the query again and again
WORKER_BLOCK_BYTES = 16 * 1024 * 1024
# a task's share of a large file (`sources.file_pieces`): one file is read by every core
PIECE_BYTES = 16 * 1024 * 1024


def _reader(spec: DatasetSpec, tz: str, limits: InputLimits) -> object:
    """The task that turns file parts (ordinal, path, bytes, first line) into checked records."""

    files = FileSource(WORKER_BLOCK_BYTES, limits)

    def read_files(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for row in batch.to_pylist():
                listed = InputFile(row["path"], row["end_byte"], 0)
                part = PlannedFile(spec.name, row["file_ordinal"], listed, row["start_byte"],
                                   row["first_line"])  # fmt: skip
                for chunk in files.read(part):
                    yield check_lines_fast(chunk.table, part.ordinal, spec, tz)

    return read_files


def _message_checker(spec: DatasetSpec, tz: str, limits: InputLimits) -> object:
    """The task that turns stream messages (ordinal, position, value) into checked records."""

    def check_messages(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            table = pa.Table.from_batches([batch])
            for ordinal in sorted(set(table["file_ordinal"].to_pylist())):
                part = table.filter(pa.compute.equal(table["file_ordinal"], ordinal))
                chunk = message_chunk(
                    part["position"].to_numpy(), part["value"].combine_chunks(), limits
                )
                if chunk is not None:
                    yield check_lines_fast(chunk.table, ordinal, spec, tz)

    return check_messages


def parse_files(
    spark: SparkSession, spec: DatasetSpec, tz: str, files: Sequence[PlannedFile],
    limits: InputLimits, piece_bytes: int = PIECE_BYTES,
) -> DataFrame:  # fmt: skip
    """The files' records, checked: one task per piece of about `piece_bytes` of a file."""
    schema = from_arrow_schema(checked_schema(spec), prefer_timestamp_ntz=False)
    rows = [
        (pf.ordinal, pf.file.path, piece.start, piece.end, piece.first_line)
        for pf in files
        for piece in pieces(pf.file.path, pf.start, pf.file.size, pf.first_line, piece_bytes)
    ]
    # one piece per partition: a piece is read by exactly one task, in order
    listing = spark.createDataFrame(
        spark.sparkContext.parallelize(rows, max(1, len(rows))),
        "file_ordinal int, path string, start_byte long, end_byte long, first_line long",
    )
    return listing.mapInArrow(_reader(spec, tz, limits), schema)  # type: ignore[arg-type]


def parse_messages(
    spark: SparkSession, spec: DatasetSpec, tz: str, parts: Sequence[PlannedFile],
    records: pa.Table, limits: InputLimits,
) -> DataFrame:  # fmt: skip
    """A stream batch's records of these parts (partition and position range), checked.

    `records` is the batch's table (`sources.stream_records.schema()`); each message goes
    to Spark tagged with its part's ordinal, so lineage and "received last" are a file's.
    """
    import pyarrow.compute as pc

    schema = from_arrow_schema(checked_schema(spec), prefer_timestamp_ntz=False)
    pieces = []
    for pf in parts:
        held = records.filter(
            pc.and_(
                pc.equal(records["partition"], pf.partition),
                pc.and_(
                    pc.greater_equal(records["position"], pf.start),
                    pc.less(records["position"], pf.file.size),
                ),
            )
        )
        ordinals = pa.array([pf.ordinal] * held.num_rows, pa.int32())
        values = held["value"].cast(pa.binary())
        pieces.append(
            pa.table({"file_ordinal": ordinals, "position": held["position"], "value": values})
        )
    messages = (
        pa.concat_tables(pieces)
        if pieces
        else pa.table({"file_ordinal": pa.array([], pa.int32()),
                       "position": pa.array([], pa.int64()), "value": pa.array([], pa.binary())})
    )  # fmt: skip
    # Spark slices the table over its cores; each task checks its messages part by part
    frame = spark.createDataFrame(messages)
    return frame.mapInArrow(_message_checker(spec, tz, limits), schema)  # type: ignore[arg-type]


class SparkStagedDataset:
    """One dataset of a batch, parsed and checked, held by Spark until the batch commits."""

    def __init__(
        self,
        spark: SparkSession,
        spec: DatasetSpec,
        parsed: DataFrame,
        parts: Sequence[PlannedFile],
        expectations: Sequence[Expectation],
        source: str = "file",
    ) -> None:
        self.spark = spark
        self.spec = spec
        self.source = source  # bronze's `source`: `file`, `kafka`, …
        self.user_rules = [e for e in expectations if not e.builtin]
        self.builtin_actions = {e.name: e.action for e in expectations if e.builtin}
        # a file's path, or a stream partition (`topic/3`) where a file's path stands
        self.paths = {pf.ordinal: pf.file.path for pf in parts}
        # the batch has no part of the dataset (a stream of one dataset, every trigger):
        # its counts are known without a Spark job
        self.untouched = not parts
        checked = self._with_rules(parsed)
        with session_setting(spark, CACHE_COMPRESSED, "false"):  # read when persisted
            self.checked = checked.persist(StorageLevel.MEMORY_AND_DISK)

    def _with_rules(self, parsed: DataFrame) -> DataFrame:
        # Built with ANSI mode off, the conditions keep that mode when they run: a division
        # by zero or a bad cast gives NULL (a failed rule, as DuckDB's NULL does) instead of
        # stopping the batch. ANSI mode stays on for everything else.
        with session_setting(self.spark, ANSI, "false"):
            return self._rules_column(parsed)

    def _rules_column(self, parsed: DataFrame) -> DataFrame:
        rules = [(e.name, e.condition or "") for e in self.user_rules]
        try:
            checked = parsed.withColumn(
                "failed_rules", F.expr(QUARANTINE.failed_rules(rules, SPARK))
            )
            checked.schema  # noqa: B018 - resolving the plan is what checks the conditions
        except AnalysisException as exc:
            columns = [f.silver_name for f in self.spec.fields]
            raise ExpectationError.unusable(self.spec.name, self.user_rules, columns, exc) from exc
        return checked

    # --- questions asked before anything is committed --------------------------------
    def rule_counts(self) -> tuple[int, int, list[RuleFailures]]:
        """Records staged, how many the reference decided, and failures per rule."""
        records = by_reference = 0
        contract: dict[str, int] = {}
        user: dict[str, int] = {}
        if not self.untouched:
            totals = self.checked.agg(
                F.count("*").alias("records"),
                F.sum(F.col("by_reference").cast("int")).alias("ref"),
            ).first()
            records = int(totals["records"]) if totals else 0
            by_reference = int(totals["ref"] or 0) if totals else 0
            contract, user = self._failures("reasons"), self._failures("failed_rules")
        counts = count_rules(contract, user, self.builtin_actions, self.user_rules)
        name = self.spec.name
        return records, by_reference, [RuleFailures(name, r, a.value, n) for r, a, n in counts]

    def _failures(self, column: str) -> dict[str, int]:
        exploded = self.checked.select(F.explode(column).alias("rule"))
        counted = exploded.groupBy("rule").agg(F.count("*").alias("n")).collect()
        return {str(r["rule"]): int(r["n"]) for r in counted}

    # --- outputs --------------------------------------------------------------------
    def _source_file(self) -> Column:
        mapping = F.create_map(
            *[x for ordinal, path in self.paths.items() for x in (F.lit(ordinal), F.lit(path))]
        )
        # cast: with no files the map is empty and its values would have no type
        return F.element_at(mapping, F.col("file_ordinal")).cast("string")

    def _staged(self, name: str) -> Column:
        """A staged column; `source_file` is looked up from the file ordinal."""
        return self._source_file() if name == "source_file" else F.col(name)

    def _quarantine_names(self) -> list[str]:
        return [e.name for e in self.user_rules if e.action is Action.QUARANTINE]

    def bronze(self, batch_id: int, run_id: str, ingested_at: datetime) -> DataFrame:
        """Every staged record as received, with its origin."""
        return self.checked.select(
            F.col("raw").alias("record"),
            F.lit(self.source).alias("source"),
            self._source_file().alias("source_file"),
            "line_number",
            F.lit(batch_id).cast("bigint").alias("_batch_id"),
            F.lit(run_id).alias("_run_id"),
            F.lit(ingested_at).alias("_ingested_at"),
        )

    def quarantine(
        self,
        batch_id: int,
        run_id: str,
        ingested_at: datetime,
        contract_step: str,
        rules_step: str,
    ) -> DataFrame:
        """The records that broke the contract or a quarantine expectation."""
        names = self._quarantine_names()
        return self.checked.where(F.expr(QUARANTINE.quarantined(names, SPARK))).select(
            self._source_file().alias("source_file"),
            "line_number",
            F.expr(QUARANTINE.reason(names, SPARK)).alias("reason"),
            F.expr(QUARANTINE.reasons(names, SPARK)).cast("array<string>").alias("reasons"),
            "raw",
            F.expr(QUARANTINE.step(contract_step, rules_step, SPARK)).alias("step"),
            F.lit(batch_id).cast("bigint").alias("_batch_id"),
            F.lit(run_id).alias("_run_id"),
            F.lit(ingested_at).alias("_quarantined_at"),
        )

    def latest(self, batch_id: int, ingested_at: datetime, rule: LatestWins) -> DataFrame:
        """The batch's silver candidates, one per key: latest event, then received last.

        Never `dropDuplicates`, which keeps an arbitrary row of each key.
        """
        order = Window.partitionBy(*rule.key).orderBy(
            *[F.col(c).desc() for c in rule.batch_order()]
        )
        return (
            self.checked.where(F.expr(QUARANTINE.passes(self._quarantine_names(), SPARK)))
            .withColumn("_rank", F.row_number().over(order))
            .where(F.col("_rank") == 1)
            .select(
                *[f.silver_name for f in self.spec.fields],
                "_rescued",
                *[self._staged(staged).alias(col) for col, staged in LINEAGE.columns],
                F.lit(batch_id).cast("bigint").alias("_batch_id"),
                F.lit(ingested_at).alias("_ingested_at"),
            )
        )

    def release(self) -> None:
        """Drop the persisted rows."""
        self.checked.unpersist()

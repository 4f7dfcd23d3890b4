"""Enrichments: typed, picklable functions that add columns to silver candidate records.

An `Enrichment` is frozen data. Both engines hand it Arrow record batches and call
`Enrichment.apply` (the embedded engine on batches streamed from DuckDB, the Spark engine in
`mapInArrow` on its Python workers), so one definition gives the same columns on either
engine. Spark pickles the object to ship it, which is why `compute` must be a module-level
function or a `functools.partial` over plain data: no open files, locks or connections.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import pyarrow as pa

from digital_finance.contract.schemas import DATASETS
from digital_finance.enrichment.arrow_types import conform, storable_problem
from digital_finance.enrichment.columns import reserved_columns, validate_inputs
from digital_finance.errors import TerminalError


class EnrichmentError(TerminalError):
    """An enrichment failed on a batch, or enrichments do not fit together; names which."""


class EnrichmentConfigError(EnrichmentError, ValueError):
    """An enrichment is defined or configured wrongly; raised before any record is read."""


# Lower case only: Spark and Delta resolve column names case-insensitively, so `Sector` and
# `sector` would be one column there and two here. A leading underscore is left to the
# pipeline's own columns (`_batch_id`, `_rescued`, ...).
_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,62}\Z")

Compute = Callable[[pa.RecordBatch], Sequence[pa.Array]]


@dataclass(frozen=True)
class Enrichment:
    """Adds `outputs` to each record of `dataset`, computed from its `inputs` columns.

    `compute` receives a batch holding exactly the `inputs` columns, in that order, and
    returns one array per output with one value per row, in row order. Outputs are nullable:
    rows written to silver before an enrichment was configured hold null in its columns.
    """

    name: str
    dataset: str
    inputs: tuple[str, ...]
    outputs: tuple[pa.Field, ...]
    compute: Compute
    description: str = ""

    def __post_init__(self) -> None:
        # Lists are accepted from user factories; tuples keep the object immutable.
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise EnrichmentConfigError(
                f"enrichment name {self.name!r} must be lower_snake_case "
                "(a-z, 0-9, _; starting with a letter; at most 63 characters)"
            )
        if self.dataset not in DATASETS:
            raise EnrichmentConfigError(
                f"enrichment {self.name!r}: unknown dataset {self.dataset!r}; "
                f"use one of {sorted(DATASETS)}"
            )
        if not callable(self.compute):
            raise EnrichmentConfigError(f"enrichment {self.name!r}: compute is not callable")
        self._check_inputs()
        self._check_outputs()

    def _check_inputs(self) -> None:
        if len(set(self.inputs)) != len(self.inputs):
            raise EnrichmentConfigError(f"enrichment {self.name!r}: inputs repeat a column")
        validate_inputs(self)

    def _check_outputs(self) -> None:
        if not self.outputs:
            raise EnrichmentConfigError(f"enrichment {self.name!r} declares no outputs")
        reserved = reserved_columns(self.dataset)
        seen: set[str] = set()
        for f in self.outputs:
            if not isinstance(f, pa.Field):
                raise EnrichmentConfigError(
                    f"enrichment {self.name!r}: outputs must be pyarrow.Field, got {f!r}"
                )
            where = f"enrichment {self.name!r}, output {f.name!r}"
            if not _NAME.match(f.name):
                raise EnrichmentConfigError(
                    f"{where}: column names must be lower_snake_case, starting with a letter"
                )
            if f.name in seen:
                raise EnrichmentConfigError(f"{where}: declared twice")
            if f.name in reserved:
                raise EnrichmentConfigError(
                    f"{where}: clashes with a silver column of {self.dataset}; rename it"
                )
            if not f.nullable:
                raise EnrichmentConfigError(
                    f"{where}: must be nullable (rows written before it existed hold null)"
                )
            problem = storable_problem(f.type)
            if problem:
                raise EnrichmentConfigError(f"{where}: {problem}")
            seen.add(f.name)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The names of the columns this enrichment adds."""
        return tuple(f.name for f in self.outputs)

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """`batch` with this enrichment's columns appended, rows and input columns untouched."""
        names = batch.schema.names
        missing = [c for c in self.inputs if c not in names]
        if missing:
            raise EnrichmentError(
                f"enrichment {self.name!r}: the batch has no column(s) {missing} (it has {names})"
            )
        clash = [n for n in self.output_names if n in names]
        if clash:
            raise EnrichmentError(
                f"enrichment {self.name!r}: the batch already has column(s) {clash}"
            )
        try:
            result = self.compute(batch.select(list(self.inputs)))
        except EnrichmentError:
            raise
        except Exception as exc:
            # Spark shows worker errors far from the config: name the enrichment in them.
            raise EnrichmentError(
                f"enrichment {self.name!r} failed on a batch of {batch.num_rows} rows: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        arrays = self._conform(result, batch.num_rows)
        schema = batch.schema
        for f in self.outputs:
            schema = schema.append(f)
        return pa.RecordBatch.from_arrays([*batch.columns, *arrays], schema=schema)

    def _conform(self, result: object, num_rows: int) -> list[pa.Array]:
        """The computed arrays, checked and cast (losslessly only) to the declared types."""
        # A lone array is iterable too (a ChunkedArray yields scalars), so it is refused
        # rather than guessed at.
        if isinstance(result, pa.Array | pa.ChunkedArray) or not isinstance(result, Sequence):
            raise EnrichmentError(
                f"enrichment {self.name!r}: compute must return a sequence of arrays "
                f"(one per output, e.g. [array]), got {type(result).__name__}"
            )
        if len(result) != len(self.outputs):
            raise EnrichmentError(
                f"enrichment {self.name!r}: compute returned {len(result)} arrays for "
                f"{len(self.outputs)} outputs {list(self.output_names)}"
            )
        arrays = []
        for f, array in zip(self.outputs, result, strict=True):
            where = f"enrichment {self.name!r}, output {f.name!r}"
            if isinstance(array, pa.ChunkedArray):
                array = array.combine_chunks()
            if not isinstance(array, pa.Array):
                raise EnrichmentError(f"{where}: expected a pyarrow.Array, got {type(array)}")
            if len(array) != num_rows:
                raise EnrichmentError(f"{where}: {len(array)} values for {num_rows} rows")
            try:
                arrays.append(conform(array, f.type))
            except (TypeError, pa.ArrowInvalid) as exc:
                raise EnrichmentError(f"{where}: {exc}") from exc
        return arrays


def _same_dataset(enrichments: Sequence[Enrichment]) -> None:
    datasets = {e.dataset for e in enrichments}
    if len(datasets) > 1:
        raise EnrichmentError(
            f"enrichments of different datasets {sorted(datasets)} cannot run on one batch; "
            "select them with for_dataset()"
        )


def output_schema(base: pa.Schema, enrichments: Sequence[Enrichment]) -> pa.Schema:
    """The schema of `base` after `enrichments`: its fields, then each output in order."""
    _same_dataset(enrichments)
    schema = base
    for e in enrichments:
        for f in e.outputs:
            if f.name in schema.names:
                raise EnrichmentError(
                    f"enrichment {e.name!r}: output {f.name!r} is already a column "
                    "(of the input or of an earlier enrichment)"
                )
            schema = schema.append(f)
    return schema


def apply_all(enrichments: Sequence[Enrichment], batch: pa.RecordBatch) -> pa.RecordBatch:
    """Apply `enrichments` in order; each one sees the original input columns it declared."""
    _same_dataset(enrichments)
    for e in enrichments:
        batch = e.apply(batch)
    return batch


def for_dataset(enrichments: Iterable[Enrichment], dataset: str) -> tuple[Enrichment, ...]:
    """The enrichments of one dataset, in configured order."""
    if dataset not in DATASETS:
        raise EnrichmentError(f"unknown dataset {dataset!r}; use one of {sorted(DATASETS)}")
    return tuple(e for e in enrichments if e.dataset == dataset)

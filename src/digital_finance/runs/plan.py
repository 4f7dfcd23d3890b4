"""Decide what a run ingests: a batch left unfinished by a crash first, then the new files.

Pure logic over what the `_system/batches` and `_system/pipeline_runs` tables hold, so every
engine plans the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from digital_finance.sources.discovery import InputError, InputFile


class BatchClaimError(RuntimeError):
    """Another writer claimed the same batch id: the commit lock did not hold. Retrying helps."""

    def __init__(self, batch_id: int) -> None:
        super().__init__(
            f"batch {batch_id} was claimed by another writer at the same moment, so the commit "
            "lock did not keep writers apart (a lakehouse on a network file system or a URI?); "
            "nothing of this batch was committed: run again"
        )
        self.batch_id = batch_id


@dataclass(frozen=True)
class PlannedFile:
    """A file of a batch, with its place in receipt order."""

    dataset: str
    ordinal: int
    file: InputFile


@dataclass(frozen=True)
class Batch:
    """The unit of commit: a fixed set of files, written to every table under one id."""

    batch_id: int
    files: tuple[PlannedFile, ...]
    resumed: bool = False

    def files_of(self, dataset: str) -> list[PlannedFile]:
        """The batch's files of one dataset, in receipt order."""
        return sorted((f for f in self.files if f.dataset == dataset), key=lambda f: f.ordinal)


@dataclass
class Plan:
    """What this run does."""

    resume: Batch | None
    new: Batch | None
    skipped_files: int = 0
    notes: list[str] = field(default_factory=list)


def plan_run(
    inputs: dict[str, list[InputFile]],
    planned: list[tuple[int, PlannedFile]],
    succeeded: set[int],
) -> Plan:
    """Plan a run from the inputs and the batches already planned (with their ids).

    A file already in any planned batch (same path, size and modification time) is not read
    again. A planned batch without a succeeded run is resumed first, exactly as planned.
    """
    by_batch: dict[int, list[PlannedFile]] = {}
    for batch_id, pf in planned:
        by_batch.setdefault(batch_id, []).append(pf)
    seen = {pf.file for _, pf in planned}
    resume: Batch | None = None
    unfinished = sorted(b for b in by_batch if b not in succeeded)
    if unfinished:
        batch_id = unfinished[-1]
        files = tuple(by_batch[batch_id])
        for pf in files:
            try:
                now = InputFile.stat_path(pf.file.path)
            except FileNotFoundError as exc:
                raise InputError(
                    f"batch {batch_id} was interrupted and needs {pf.file.path}, which is gone; "
                    "restore the file and run again"
                ) from exc
            if now != pf.file:
                raise InputError(
                    f"batch {batch_id} was interrupted and {pf.file.path} changed since; "
                    "restore the original file and run again"
                )
        resume = Batch(batch_id, files, resumed=True)
    next_id = max(by_batch, default=0) + 1
    new_files: list[PlannedFile] = []
    skipped = 0
    for dataset, candidates in inputs.items():
        ordinal = 0
        for f in candidates:
            if f in seen:
                skipped += 1
                continue
            new_files.append(PlannedFile(dataset, ordinal, f))
            ordinal += 1
    new = Batch(next_id, tuple(new_files)) if new_files else None
    return Plan(resume, new, skipped)

"""Decide what a run ingests: a batch left unfinished by a crash first, then the new files.

Logic over what the `_system/batches` and `_system/pipeline_runs` tables hold, and over the
content of the input files (`sources.file_scan`), so every engine plans the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import NamedTuple

from digital_finance.errors import TransientError
from digital_finance.sources.base import Source
from digital_finance.sources.discovery import InputError, InputFile
from digital_finance.sources.file_scan import FileChangedError, FileScan, scan_file


class BatchClaimError(TransientError):
    """Another writer claimed the same batch id: the commit lock did not hold. Retrying helps."""

    def __init__(self, batch_id: int) -> None:
        super().__init__(
            f"batch {batch_id} was claimed by another writer at the same moment, so the commit "
            "lock did not keep writers apart (a lakehouse on a network file system or a URI?); "
            "nothing of this batch was committed: run again"
        )
        self.batch_id = batch_id

    def __reduce__(self) -> tuple[type[BatchClaimError], tuple[int]]:
        return type(self), (self.batch_id,)


class UnfinishedBatchError(InputError):
    """An interrupted batch cannot be finished from its files: one is gone or changed."""

    def __init__(self, batch_id: int, path: str, what: str, datasets: tuple[str, ...]) -> None:
        fix = (
            "Either put the file back as it was and run again, or give the batch up"
            if "spool" not in what
            else "Its records were spooled under _system/spool/ and that file is gone: give "
            "the batch up (its positions are read again from the broker, if it still has them)"
        )
        super().__init__(
            f"batch {batch_id} was interrupted and {path} {what}, so the batch cannot be "
            f"finished. {fix} with `digital-finance batch abandon {batch_id}` (every table "
            "goes back to where it was before the batch; its files are read as new next time)"
        )
        self.batch_id, self.path, self.what, self.datasets = batch_id, path, what, datasets

    def __reduce__(
        self,
    ) -> tuple[type[UnfinishedBatchError], tuple[int, str, str, tuple[str, ...]]]:
        return type(self), (self.batch_id, self.path, self.what, self.datasets)


@dataclass(frozen=True)
class PlannedFile:
    """A source partition's part in a batch: positions [start, end), with its receipt order.

    For files (`source` "file") the partition is the path and the positions are bytes
    [start, file.size): a file read for the first time is read whole (`start` 0); lines
    appended to a file read before are a part of their own, starting at the byte where the
    last read ended and numbered on from the line there.

    For streams (`source` "kafka", "mqtt", …) `file.path` is the partition (`topic/3`),
    the positions are its offsets [start, file.size), and `sha256` names the spool file
    that holds the part's records until the batch is done (`lakehouse.spool`).
    """

    dataset: str
    ordinal: int
    file: InputFile  # path, size (= the end of the part) and modification time when listed
    start: int = 0
    first_line: int = 1
    sha256: str | None = None  # of the file's bytes [0, file.size); None in older lakehouses
    source: str = "file"

    # --- as a `sources.base.SourcePart` ----------------------------------------------
    @property
    def is_file(self) -> bool:
        """Whether the part is a file's bytes (and not a stream partition's offsets)."""
        return self.source == "file"

    @property
    def partition(self) -> str:
        """The file's path."""
        return self.file.path

    @property
    def end(self) -> int:
        """The byte the part reaches: the file's size when it was listed."""
        return self.file.size


@dataclass(frozen=True)
class Batch:
    """The unit of commit: a fixed set of file parts, written to every table under one id."""

    batch_id: int
    files: tuple[PlannedFile, ...]
    resumed: bool = False
    # finished from what bronze holds of it, its files being gone or changed (`plan_run`)
    from_bronze: bool = False
    # the records of a new stream batch, in memory (`sources.stream_records`); files and
    # resumed batches are read from their files or the spool
    records: Source | None = field(default=None, compare=False)

    def files_of(self, dataset: str) -> list[PlannedFile]:
        """The batch's files of one dataset, in receipt order."""
        return sorted((f for f in self.files if f.dataset == dataset), key=lambda f: f.ordinal)


class History(NamedTuple):
    """What the `_system` tables say of the batches so far."""

    planned: list[tuple[int, PlannedFile]]  # every planned file part, with its batch id
    succeeded: set[int]
    abandoned: set[int]
    forgotten: dict[str, int]  # path -> parts of it up to this batch count as never read
    abandoning: AbstractSet[int] = frozenset()  # an abandon begun, not finished: no planning


@dataclass
class Plan:
    """What this run does."""

    resume: Batch | None
    new: Batch | None
    skipped_files: int = 0
    notes: list[str] = field(default_factory=list)


Scanner = Callable[[str, int, int | None], FileScan]
Spooled = Callable[[str], bool]  # whether the spool holds the records of this sha256


def reached_positions(
    planned: list[tuple[int, PlannedFile]], abandoned: AbstractSet[int] = frozenset()
) -> dict[tuple[str, str], int]:
    """Where each stream partition stands: the end of its last part in any batch not
    abandoned, keyed by (source, partition). An unfinished batch counts: whoever takes the
    lock next finishes it from the spool."""
    reached: dict[tuple[str, str], int] = {}
    for batch_id, pf in planned:
        if pf.is_file or batch_id in abandoned:
            continue
        key = (pf.source, pf.partition)
        reached[key] = max(reached.get(key, 0), pf.end)
    return reached


def plan_run(
    inputs: dict[str, list[InputFile]],
    planned: list[tuple[int, PlannedFile]],
    succeeded: set[int],
    scan: Scanner = scan_file,
    *,
    abandoned: set[int] | frozenset[int] = frozenset(),
    from_bronze: int | None = None,
    forgotten: Mapping[str, int] | None = None,
    spooled: Spooled | None = None,
    stat: Callable[[str], InputFile] = InputFile.stat_path,
) -> Plan:
    """Plan a run from the inputs and the file parts already planned (with their batch ids).

    Files are known by content: a file whose size and modification time are those of its
    last read is not read again; any other is hashed, and skipped when its bytes were
    ingested before (under any path), read from where its last read ended when lines were
    appended to it, and read whole as a new version otherwise. A planned batch without a
    succeeded run is resumed first, exactly as planned; when its files are gone or changed,
    `UnfinishedBatchError` says so, unless the caller found that bronze holds the batch and
    passes its id as `from_bronze`. An abandoned batch's files count as never read; its id
    is never used again. So do the parts of a forgotten path planned before it was forgotten
    (`digital-finance forget`), for what the next runs read. A stream part is resumed from
    the spool (`spooled` says whether it still holds the part's records); the files logic
    never sees stream parts, whose positions `reached_positions` gives.
    """
    forgot = forgotten or {}
    by_batch: dict[int, list[PlannedFile]] = {}
    latest: dict[str, tuple[int, PlannedFile]] = {}  # path -> its newest part, with its batch
    contents: dict[str, tuple[str, int]] = {}  # sha256 -> (path, batch) that held those bytes
    highest = max((b for b, _ in planned), default=0)
    for batch_id, pf in planned:
        if batch_id in abandoned:
            continue
        by_batch.setdefault(batch_id, []).append(pf)
        if not pf.is_file or batch_id <= forgot.get(pf.file.path, 0):
            continue  # resumed as planned if unfinished, but no longer known as read
        newest = latest.get(pf.file.path)
        if newest is None or (batch_id, pf.file.size) > (newest[0], newest[1].file.size):
            latest[pf.file.path] = (batch_id, pf)
        if pf.sha256 is not None:
            contents.setdefault(pf.sha256, (pf.file.path, batch_id))
    resume: Batch | None = None
    unfinished = sorted(b for b in by_batch if b not in succeeded)
    if unfinished:
        batch_id = unfinished[-1]
        files = tuple(by_batch[batch_id])
        if from_bronze != batch_id:
            datasets = tuple(sorted({pf.dataset for pf in files}))
            for pf in files:
                if pf.is_file:
                    _check_unchanged(batch_id, pf, scan, stat, datasets)
                elif pf.sha256 is None or spooled is None or not spooled(pf.sha256):
                    raise UnfinishedBatchError(
                        batch_id, pf.partition, "has no records left in the spool", datasets
                    )
        resume = Batch(batch_id, files, resumed=True, from_bronze=from_bronze == batch_id)
    next_id = highest + 1
    plan = Plan(resume, None)
    prefetch = getattr(scan, "prefetch", None)
    if prefetch is not None:  # the files to hash, hashed side by side before they are taken
        wanted = [
            (f.path, f.size, _scan_of(f, latest.get(f.path))) for fs in inputs.values() for f in fs
        ]
        prefetch([(path, size, at) for path, size, (needed, at) in wanted if needed])
    new_files: list[PlannedFile] = []
    for dataset, candidates in inputs.items():
        ordinal = 0
        for f in candidates:
            part = _new_part(dataset, ordinal, f, latest.get(f.path), contents, scan, plan)
            if part is None:
                plan.skipped_files += 1
                continue
            if part.sha256 is not None:
                contents[part.sha256] = (f.path, next_id)  # a copy later in this run is skipped
            new_files.append(part)
            ordinal += 1
    plan.new = Batch(next_id, tuple(new_files)) if new_files else None
    return plan


def _scan_of(f: InputFile, newest: tuple[int, PlannedFile] | None) -> tuple[bool, int | None]:
    """Whether `f` is hashed, and the size of its last read when the hash of that prefix
    is wanted too (lines appended since)."""
    last = newest[1] if newest is not None else None
    if last is not None and (last.file.size, last.file.modified_ns) == (f.size, f.modified_ns):
        return False, None
    at = last.file.size if last is not None and last.sha256 and last.file.size < f.size else None
    return True, at


def _new_part(
    dataset: str,
    ordinal: int,
    f: InputFile,
    newest: tuple[int, PlannedFile] | None,
    contents: dict[str, tuple[str, int]],
    scan: Scanner,
    plan: Plan,
) -> PlannedFile | None:
    """The part of `f` this run reads, or None when every byte of it was read before."""
    last = newest[1] if newest is not None else None
    needed, at = _scan_of(f, newest)
    if not needed:
        return None  # as it was at its last read
    try:
        found = scan(f.path, f.size, at)
    except (FileChangedError, FileNotFoundError) as exc:
        raise InputError(f"{f.path} changed while it was being listed ({exc}); run again") from exc
    same = contents.get(found.sha256)
    if same is not None:
        if same[0] != f.path:
            plan.notes.append(
                f"{f.path} holds the same bytes as {same[0]} (batch {same[1]}): skipped"
            )
        return None
    if (
        newest is not None
        and last is not None
        and at is not None
        and found.prefix_sha256 == last.sha256
        and found.line_end_at
        and found.appendable
    ):
        plan.notes.append(
            f"{f.path}: {f.size - at:,} bytes appended since batch {newest[0]}; only those are read"
        )
        return PlannedFile(dataset, ordinal, f, at, found.lines_before + 1, found.sha256)
    if newest is not None:
        plan.notes.append(
            f"{f.path} changed since batch {newest[0]} and is not an append: read whole, "
            "as a new version of the file"
        )
    return PlannedFile(dataset, ordinal, f, sha256=found.sha256)


def _check_unchanged(
    batch_id: int,
    pf: PlannedFile,
    scan: Scanner,
    stat: Callable[[str], InputFile],
    datasets: tuple[str, ...],
) -> None:
    """An interrupted batch is resumed only from the very bytes it was planned on."""
    path = pf.file.path
    try:
        now = stat(path)
    except OSError as exc:
        raise UnfinishedBatchError(batch_id, path, "is gone", datasets) from exc
    if pf.sha256 is None:  # planned before files were known by content
        same = now == pf.file
    else:
        try:
            same = now.size >= pf.file.size and scan(path, pf.file.size, None).sha256 == pf.sha256
        except (OSError, FileChangedError):
            same = False
    if not same:
        raise UnfinishedBatchError(batch_id, path, "changed since it was planned", datasets)

"""A batch's first blocks, read and split while the engine's libraries load.

A CLI run into a new lakehouse spends its first third of a second importing DuckDB, pyarrow
and delta-rs on the main thread, with the second core idle once the files are hashed
(`runs.intake.FileIntake.hash_ahead`). A new lakehouse has read nothing, so the batch reads
the first dataset's files from their first bytes, in the order listed: the first two
blocks' worth of them are read and split into lines on a thread meanwhile (the split runs
in the kernel, without the interpreter lock; a gzip file is passed over, its inflating
holds the lock). The batch's reader takes them, and a file's reader where it stopped, when
it reaches the file.

What is read ahead is what `FileSource.read` would read: the same bytes, limits and block
size, so a reading taken gives the same chunks, an error included at the same place. A
reading nobody takes (the plan chose other parts, another engine reads the files) is
dropped with `discard` at the end of the run. The readings are the process's, not one
lakehouse's: two runs at once in one process may drop each other's, which costs only the
time they would have saved. Without the native kernel nothing is read ahead.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

from digital_finance import native
from digital_finance.sources.file_reader import BLOCK_BYTES, input_form, read_chunks
from digital_finance.sources.input_limits import InputLimits
from digital_finance.sources.line_chunk import LineChunk

# bytes of input read ahead at most: the idle time at start-up covers about two blocks' split
_BUDGET = 2 * BLOCK_BYTES


@dataclass
class _Reading:
    path: str
    size: int
    block_bytes: int
    limits: InputLimits
    chunks: list[LineChunk] = field(default_factory=list)
    rest: Generator[LineChunk, None, None] | None = None  # the reader, where the thread stopped
    error: BaseException | None = None
    reached: bool = False  # the thread read some of it (False: read it as usual)
    done: threading.Event = field(default_factory=threading.Event)

    def read(self, budget: int) -> int:
        """Read until the file ends or `budget` bytes are read; the budget left."""
        self.reached = True
        reader = read_chunks(self.path, self.block_bytes, end=self.size, limits=self.limits)
        try:
            for chunk in reader:
                self.chunks.append(chunk)
                budget -= _text_bytes(chunk)
                if budget <= 0:
                    self.rest = reader
                    return 0
        except BaseException as exc:  # raised to the batch where its reader would have met it
            self.error = exc
            return 0
        return budget

    def matches(
        self, path: str, start: int, end: int | None, line: int, block: int, limits: InputLimits
    ) -> bool:
        whole = start == 0 and line == 1 and end == self.size
        return whole and path == self.path and block == self.block_bytes and limits == self.limits

    def handed_over(self) -> Iterator[LineChunk]:
        chunks, rest, error = self.chunks, self.rest, self.error
        self.chunks, self.rest = [], None
        yield from chunks
        if error is not None:
            raise error
        if rest is not None:
            yield from rest


def _text_bytes(chunk: LineChunk) -> int:
    return int(chunk.table.column("raw").nbytes)


def _read(readings: list[_Reading]) -> None:
    budget = _BUDGET
    for reading in readings:
        try:
            if budget > 0 and _worth_reading(reading.path, reading.size, budget):
                budget = reading.read(budget)
        finally:
            reading.done.set()


def _worth_reading(path: str, size: int, budget: int) -> bool:
    """Not a gzip file (inflating in Python holds the interpreter lock for most of its time,
    which the libraries loading meanwhile need), and not a JSON array larger than what is
    left of the budget (an array is read whole)."""
    try:
        form = input_form(path)
    except OSError:  # the batch's reader says what is wrong with it
        return False
    return form == "lines" or (form == "array" and size <= budget)


_lock = threading.Lock()
_readings: list[_Reading] = []


def start(files: list[tuple[str, int]], block_bytes: int, limits: InputLimits) -> None:
    """Start reading bytes [0, size) of the local files `(path, size)`, in order, on a
    thread of their own, until about two blocks are read."""
    if native.kernel() is None:  # Python's splitter holds the lock the libraries need then
        return
    readings = [_Reading(path, size, block_bytes, limits) for path, size in files]
    with _lock:
        _readings.extend(readings)
    try:
        threading.Thread(target=_read, args=(readings,), name="read-ahead", daemon=True).start()
    except RuntimeError:  # no thread to be had: the batch reads them itself
        for reading in readings:
            reading.done.set()


def take(
    path: str,
    start: int,
    end: int | None,
    first_line: int,
    block_bytes: int,
    limits: InputLimits,
) -> Iterator[LineChunk] | None:
    """The chunks of a part read ahead, then the rest of it; None when it was not."""
    with _lock:
        found = next(
            (r for r in _readings if r.matches(path, start, end, first_line, block_bytes, limits)),
            None,
        )
        if found is None:
            return None
        _readings.remove(found)
    found.done.wait()
    return found.handed_over() if found.reached else None


def discard() -> None:
    """Drop every reading not taken (and close its reader, which returns its buffer)."""
    with _lock:
        left = list(_readings)
        _readings.clear()
    for reading in left:
        reading.done.wait()
        rest = reading.rest
        reading.chunks, reading.rest = [], None
        if rest is not None:
            rest.close()

"""Cut a plain NDJSON file's bytes into pieces that separate readers read as one reader would.

A piece starts right after a newline, so no line is cut, and carries the number of its first
line, so that lines are numbered as when the file is read whole: the numbers are the
records' identity (lineage, "received last" among equal events). Used by the Spark engine,
whose tasks each read a piece: one large file is then read by every core, not by one.
Finding the cuts reads the bytes once on the caller's side, counting newlines at a few GB/s,
where the pieces' readers parse them at tens of MB/s.
"""

from __future__ import annotations

from dataclasses import dataclass

from digital_finance.sources.file_reader import is_plain_ndjson
from digital_finance.sources.input_store import InputStore

_COUNT_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Piece:
    """Bytes [start, end) of a file, whose first line is line `first_line` of the file."""

    start: int
    end: int
    first_line: int


def pieces(
    path: str,
    start: int,
    end: int,
    first_line: int,
    target_bytes: int,
    store: InputStore | None = None,
) -> list[Piece]:
    """Bytes [start, end) of the file in pieces of about `target_bytes`, cut after newlines.

    A part that is not read as plain NDJSON from its start (gzip, one JSON array), or that is
    no larger than `target_bytes`, stays one piece. A part that starts after byte 0 holds
    lines appended to a file read before: plain NDJSON by definition.
    """
    store = store or InputStore()
    if end - start <= target_bytes or (start == 0 and not is_plain_ndjson(path, store)):
        return [Piece(start, end, first_line)]
    cuts: list[tuple[int, int]] = []  # (byte after a newline, number of the line there)
    goal = start + target_bytes  # the next cut: after the first newline at or past it
    newlines = 0  # in bytes [start, at)
    at = start
    with store.open(path, start, end) as stream:
        while goal < end:
            block = stream.read(min(_COUNT_BLOCK, end - at))
            if not block:
                break
            scanned = 0  # newlines counted in block[:scanned]
            while goal < end:
                newline = block.find(b"\n", max(scanned, goal - at))
                if newline < 0:
                    break
                newlines += block.count(b"\n", scanned, newline + 1)
                scanned = newline + 1
                if at + scanned < end:
                    cuts.append((at + scanned, first_line + newlines))
                goal = at + scanned + target_bytes
            newlines += block.count(b"\n", scanned)
            at += len(block)
    starts = [(start, first_line), *cuts]
    ends = [byte for byte, _ in cuts] + [end]
    return [Piece(s, e, line) for (s, line), e in zip(starts, ends, strict=True)]

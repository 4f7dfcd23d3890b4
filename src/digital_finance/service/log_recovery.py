"""What the durable log holds after a crash: each dataset's segments, read back at `open`.

Frames past the last fsync were never acknowledged, so a torn tail of the last segment — an
incomplete frame, or a damaged one with nothing intact after it — is cut off. A damaged
frame followed by intact ones is corruption of acknowledged records and stops the log with
the file and byte offset. (A process killed mid-`write` leaves a prefix of what it wrote,
which is a torn tail; only a power loss that persisted later blocks of an unsynced write
before earlier ones could look like corruption, and the message says where to look.)

Only the last segment can end in bytes never acknowledged (a segment is started once the
one before is fsynced): the others are read by their frame headers alone, the last one
checked whole. Receipts of `Idempotency-Key`s still in their window are handed back as they
are met, so a retried request finds its answer after a restart.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from digital_finance.errors import TerminalError
from digital_finance.service.log_segments import (
    BadFrame,
    Receipt,
    Segment,
    SegmentFile,
    checked_body,
    fsync_folder,
    intact_after,
    read_frame,
    segment_firsts,
)

logger = logging.getLogger(__name__)


def recover_segments(
    folder: Path, horizon: float, remember: Callable[[Receipt], None]
) -> list[Segment]:
    """A dataset's segments in `folder`, in order (an empty first one made for a new
    dataset); receipts written at or after `horizon` (unix time) go to `remember`."""
    folder.mkdir(exist_ok=True)
    firsts = segment_firsts(folder)
    if not firsts:
        (folder / f"{0:020d}.log").touch()
        fsync_folder(folder)
        firsts = [0]
    segments: list[Segment] = []
    for number, first in enumerate(firsts):
        if segments and segments[-1].end != first:
            raise TerminalError(
                f"{folder}: positions {segments[-1].end} to {first - 1} are missing "
                "between two segments: the log is damaged"
            )
        last = number == len(firsts) - 1
        path = folder / f"{first:020d}.log"
        segments.append(_scan(path, first, last=last, horizon=horizon, remember=remember))
    return segments


def _scan(
    path: Path, first: int, *, last: bool, horizon: float, remember: Callable[[Receipt], None]
) -> Segment:
    """A segment's frames by their headers (the last segment's checked whole, its torn
    tail cut off)."""
    fd = os.open(path, (os.O_RDWR if last else os.O_RDONLY) | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        file = SegmentFile(fd, size)
        offset, position, newest = 0, first, 0.0
        while offset < size:
            try:
                frame = read_frame(file, offset)
                if last:
                    checked_body(file, frame, path)
            except BadFrame as bad:
                if not last:
                    raise TerminalError(
                        f"{path}: {bad} at byte {offset}: the log is damaged"
                    ) from None
                if intact_after(fd, offset, size):
                    raise TerminalError(
                        f"{path}: {bad} at byte {offset}, followed by intact frames: "
                        "acknowledged records are damaged. Keep a copy of the folder; "
                        "cutting the file at that byte loses the records after it"
                    ) from None
                logger.warning(
                    "%s: cutting %d bytes never acknowledged (%s at byte %d)",
                    path,
                    size - offset,
                    bad,
                    offset,
                )
                os.ftruncate(fd, offset)
                os.fsync(fd)
                size = offset
                break
            if frame.first != position:
                raise TerminalError(
                    f"{path}: the frame at byte {offset} holds position {frame.first}, "
                    f"{position} was expected: the log is damaged"
                )
            if frame.receipt is not None and frame.receipt.at >= horizon:
                remember(frame.receipt)
            newest = max(newest, frame.at)
            position += frame.records
            offset += frame.length
        return Segment(first, path, position, size, newest)
    finally:
        os.close(fd)

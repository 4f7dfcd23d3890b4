"""What every source yields: raw records with their line numbers and the reader's verdicts.

A chunk is an Arrow table (`line_number`, `raw`, `line_reason`). The verdicts are built
from buffers, never through `pa.array` or `pa.scalar`, which import pandas on first use (a
quarter of a second, and 6% of the 1M-record batch when it was paid on a file's first bad
line).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from digital_finance.arrow_arrays import coded_strings, int_array, large_strings
from digital_finance.contract.schemas import INVALID_UTF8, RECORD_TOO_LARGE
from digital_finance.sources.input_limits import PREFIX_BYTES

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa


@dataclass(frozen=True)
class LineChunk:
    """Raw records of one file: `raw` (text without the line end) and `line_number`.

    `line_reason` is null for a line read whole as UTF-8; otherwise the reader's verdict
    (`record_too_large`, whose `raw` is then the line's first bytes, or `invalid_utf8`,
    whose `raw` has the bad bytes escaped).
    """

    table: pa.Table  # columns: line_number int64, raw large_string, line_reason string
    lines: int | None = None  # physical lines covered (empty ones dropped); None: num_rows

    @property
    def num_rows(self) -> int:
        """How many lines (records and blank lines) the chunk holds."""
        return int(self.table.num_rows)

    @property
    def lines_covered(self) -> int:
        """How many lines of the file the chunk covers: where the next chunk's numbers start."""
        return self.num_rows if self.lines is None else self.lines


def prefix_text(head: bytes) -> str:
    """What stands for a record over the limit: its first bytes, as the kernel keeps them —
    without a character the cut split, and escaped where they are not UTF-8."""
    head = head[:PREFIX_BYTES]
    for cut in range(1, min(3, len(head)) + 1):
        lead = head[-cut]
        if lead & 0xC0 != 0x80:
            need = 4 if lead >= 0xF0 else 3 if lead >= 0xE0 else 2 if lead >= 0xC0 else 1
            if need > cut:
                head = head[:-cut]
            break
    return head.decode("utf-8", errors="backslashreplace")


def oversize_chunk(prefix: bytes, line: int) -> LineChunk:
    """One line over the record limit: its first bytes stand for it."""
    import pyarrow as pa

    text = prefix_text(prefix)
    return LineChunk(
        pa.table(
            {
                "line_number": int_array([line], pa.int64()),
                "raw": large_strings([text]),
                "line_reason": pa.array([RECORD_TOO_LARGE], pa.string()),
            }
        )
    )


def too_large(big: npt.NDArray[np.bool_], bad: npt.NDArray[np.bool_]) -> pa.Array:
    """The `line_reason` column: `record_too_large` wins over `invalid_utf8`."""
    return coded_strings(len(big), [(bad, INVALID_UTF8), (big, RECORD_TOO_LARGE)])


def invalid_utf8(bad: npt.NDArray[np.bool_]) -> pa.Array:
    """The `line_reason` column of lines of which `bad` are not UTF-8."""
    return coded_strings(len(bad), [(bad, INVALID_UTF8)] if bad.any() else [])


def no_reasons(count: int) -> pa.Array:
    """The `line_reason` column of `count` lines read whole as UTF-8."""
    import pyarrow as pa

    return pa.nulls(count, pa.string())

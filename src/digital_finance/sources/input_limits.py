"""The limits that keep reading any input within a fixed amount of memory and time.

A record larger than `max_record_bytes` is never held whole: the reader keeps its first
`PREFIX_BYTES` for quarantine and skips the rest. A gzip stream is inflated as it is read
and stopped when it grows past `max_inflated_bytes` or `max_inflate_ratio` times what it
has consumed (a bomb). A file that is one JSON array is parsed whole, so it may be at most
`max_array_bytes`. docs/CONTRACT_RULES.md ("Limits") explains each and what it costs.
"""

from __future__ import annotations

from dataclasses import dataclass

from digital_finance.errors import TerminalError

MIB = 1024 * 1024
GIB = 1024 * MIB
PREFIX_BYTES = 4096  # of an oversize record: what bronze and quarantine keep of it
# inflation below this size is never called a bomb: small files compress unevenly
_RATIO_GRACE_BYTES = 16 * MIB


@dataclass(frozen=True)
class InputLimits:
    """Per-record and per-file limits of the reader; `[input]` in the config file."""

    max_record_bytes: int = 16 * MIB
    max_array_bytes: int = 64 * MIB  # measured: parsing one costs about 5 times its size
    max_inflated_bytes: int = 64 * GIB
    max_inflate_ratio: int = 100

    def check_inflated(self, path: str, inflated: int, consumed: int) -> None:
        """Refuse a gzip stream that grew past the total or the ratio."""
        if inflated > self.max_inflated_bytes:
            raise FileRefusedError(
                path,
                f"it inflates to more than {_size(self.max_inflated_bytes)}",
                "split it, or raise [input] max_inflated_bytes",
            )
        if inflated > _RATIO_GRACE_BYTES and inflated > self.max_inflate_ratio * max(consumed, 1):
            raise FileRefusedError(
                path,
                f"{_size(consumed)} of it inflated to {_size(inflated)}, more than "
                f"{self.max_inflate_ratio} times its size: a decompression bomb",
                "remove it from the inputs, or raise [input] max_inflate_ratio if it is real",
            )

    def check_array(self, path: str, size: int) -> None:
        """Refuse a JSON-array file too large to parse whole."""
        if size > self.max_array_bytes:
            raise FileRefusedError(
                path,
                f"it is one JSON array of more than {_size(self.max_array_bytes)}, which is "
                "parsed whole",
                f"convert it to NDJSON (`jq -c '.[]' {path} > {path}l`), or raise "
                "[input] max_array_bytes",
            )


class FileRefusedError(TerminalError):
    """An input file cannot be read within the limits; nothing of the batch was committed."""

    def __init__(self, path: str, why: str, fix: str) -> None:
        super().__init__(f"{path} is refused: {why}; {fix}")
        self.path, self.why, self.fix = path, why, fix

    def __reduce__(self) -> tuple[type[FileRefusedError], tuple[str, str, str]]:
        return type(self), (self.path, self.why, self.fix)


def _size(n: int) -> str:
    if n >= GIB:
        return f"{n / GIB:.1f} GiB"
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n:,} bytes"

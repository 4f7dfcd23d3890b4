"""What the CLI's process sets for itself, before the pipeline runs.

These are settings of a whole process, so the CLI, whose process it is, makes them; the
library (`digital_finance.Lakehouse` in someone else's program) does not.
"""

from __future__ import annotations

import os

# numpy's OpenBLAS starts a thread per core that spins for a while after the import: a tenth
# of a CPU-second a run on two cores, for matrix work the pipeline never does. Set when this
# module is imported, before anything imports numpy; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> None:
    """Let glibc's allocator keep freed blocks of up to 32 MB for the next allocation.

    A batch allocates and frees blocks of a few to 30 MB all the time (the kernel's columns,
    a file's lines); by default glibc hands the larger ones back to the system and the next
    one faults in again, page by page: 45,000 page faults and 0.2 CPU-seconds of a 1M-record
    batch (docs/PERFORMANCE.md). Peak memory stays within its run-to-run spread. Only
    glibc's memory is concerned (DuckDB and pyarrow have allocators of their own).
    """
    import sys

    if sys.platform != "linux":
        return
    import ctypes

    try:  # the process's own symbols: glibc's when Python links it (find_library forks)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    mallopt(_M_TRIM_THRESHOLD, 128 * 1024 * 1024)

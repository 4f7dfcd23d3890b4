"""What the CLI's process sets for itself (`cli/process.py`), checked in fresh processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_THREADS = (
    "import os\n"
    "{first}\n"
    "import numpy\n"
    "print(os.environ.get('OPENBLAS_NUM_THREADS'), len(os.listdir('/proc/self/task')))\n"
)


def _run(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2,
    reason="threads read from /proc; OpenBLAS starts none on one core",
)
def test_the_cli_keeps_numpy_from_starting_blas_threads() -> None:
    alone = _run(_THREADS.format(first="pass"))
    with_cli = _run(_THREADS.format(first="import digital_finance.cli.main"))
    assert with_cli == "1 1"  # one thread: the interpreter's
    assert alone.split()[0] == "None" and int(alone.split()[1]) > 1  # what it spares
    # a user's own setting wins
    assert (
        _run(_THREADS.format(first="import digital_finance.cli.main"), OPENBLAS_NUM_THREADS="2")[0]
        == "2"
    )


_FAULTS = (
    "import resource, threading\n"
    "from digital_finance.cli import process\n"
    "if {keep}:\n"
    "    process.keep_freed_memory()\n"
    "def work():\n"
    "    for _ in range(30):\n"
    "        block = bytearray(15 * 2**20)\n"
    "        del block\n"
    "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "worker = threading.Thread(target=work)\n"
    "worker.start()\n"
    "worker.join()\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_blocks_are_kept_for_the_next_allocation() -> None:
    """A 15 MB block freed and allocated again faults in once, not again and again."""
    default = int(_run(_FAULTS.format(keep=False)))
    kept = int(_run(_FAULTS.format(keep=True)))
    pages = 15 * 2**20 // 4096
    assert kept < 1.5 * pages <= default

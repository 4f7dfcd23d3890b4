"""The optional native kernel (`native/kernel`, Rust): found once, used where it is installed.

The kernel splits NDJSON blocks into lines and decides the contract for them, about ten
times faster than the DuckDB SQL contract. It is a separate distribution
(`digital-finance-kernel`) because it needs a Rust toolchain to build; `make setup`
installs it. Without it every path falls back to the pure Python / DuckDB code, which gives
the same tables.
"""

from __future__ import annotations

import os
from functools import cache
from types import ModuleType

INSTALL_HINT = (
    "the native kernel is not installed; build it with `pip install ./native/kernel` "
    "(needs a Rust toolchain: https://rustup.rs) or run `make setup`"
)
# set to 0 to run without the kernel even where it is installed (benchmarks, tests)
ENV_SWITCH = "DIGITAL_FINANCE_NATIVE"
OFF_WORDS = ("0", "off", "false", "no")


def switched_off() -> bool:
    """True when the environment asks to run without the kernel."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() in OFF_WORDS


@cache
def kernel() -> ModuleType | None:
    """The `digital_finance_kernel` module, or None when it is missing or switched off."""
    if switched_off():
        return None
    try:
        import digital_finance_kernel
    except ImportError:
        return None
    return digital_finance_kernel

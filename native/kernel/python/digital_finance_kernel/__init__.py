"""Native contract kernel of Digital Finance (Rust, built with maturin).

Optional: `digital_finance` uses it when it is installed and falls back to its DuckDB SQL
contract otherwise. See `native/kernel/README.md`.
"""

from digital_finance_kernel._native import MAX_DEPTH, Kernel, scan_file, split_array, split_lines

__all__ = ["MAX_DEPTH", "Kernel", "scan_file", "split_array", "split_lines"]

"""`digital-finance generate`: synthetic data with a progress bar."""

from __future__ import annotations

import json
from pathlib import Path

from rich.progress import Progress

from digital_finance.cli.console import console, err_console


def generate_data(out: Path, stocks: int, funds: int, seed: int) -> None:
    """Generate and print what was written."""
    from digital_finance.generate import generate

    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("generating", total=stocks + funds)
        report = generate(
            out, stocks, funds, seed, on_progress=lambda n: bar.update(task, completed=n)
        )
    console.print(f"wrote {len(report.files)} file(s) under {out}")
    console.print(json.dumps({"records": report.records, "invalid": report.invalid}, indent=2))

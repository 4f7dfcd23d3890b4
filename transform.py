"""The seed's original entry point, kept working: `python transform.py [options]`.

Same options as `digital-finance run`; the inputs default to data/stocks.json and
data/mutual_funds.json as in the seed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from digital_finance.cli.main import main as cli_main


def main(argv: list[str]) -> None:
    """Run the pipeline with the seed's defaults for missing inputs."""
    args = list(argv)
    if "--help" not in args and "-h" not in args:
        if not any(a == "--stocks" or a.startswith("--stocks=") for a in args):
            args += ["--stocks", "data/stocks.json"]
        if not any(a == "--funds" or a.startswith("--funds=") for a in args):
            args += ["--funds", "data/mutual_funds.json"]
    cli_main(["run", *args], prog_name="transform.py")


if __name__ == "__main__":
    main(sys.argv[1:])

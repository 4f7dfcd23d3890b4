"""The seed's original entry point, kept working: `python transform.py [options]`.

Same options as `digital-finance run`; the inputs default to data/stocks.json and
data/mutual_funds.json as in the seed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src"))

try:
    from digital_finance.cli.main import main as cli_main
except ImportError as missing:  # run by a Python without the project's dependencies
    venv = HERE / ".venv"
    venv_python = venv / "bin" / "python"
    # the project's own environment, made by `make setup`, when this is not it already
    if venv_python.exists() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])  # noqa: S606
    sys.exit(f"transform.py needs the project's dependencies ({missing}): run `make setup` first")


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

"""The application file for spark-submit: runs the `digital-finance` command line.

`deploy/spark-submit.sh` passes this file to spark-submit, followed by the command's own
arguments::

    spark-submit [spark options] deploy/spark_submit_main.py run --engine spark --stocks ...

spark-submit cannot start a console script, so this file stands in for `digital-finance`. The
package itself comes from the wheel shipped with --py-files (or an environment on the nodes).
Inside spark-submit the Spark engine reuses the session spark-submit configured.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    """Run `digital-finance` with `argv` (the arguments after this file's name)."""
    try:
        from digital_finance.cli.main import main as cli_main
    except ImportError as exc:
        sys.stderr.write(
            f"spark_submit_main.py: cannot import digital_finance ({exc}).\n"
            "Ship the package with --py-files (deploy/spark-submit.sh does) or install it in "
            "the Python that runs the driver, together with its dependencies.\n"
        )
        raise SystemExit(1) from exc
    # ends the process itself (os._exit) once the command's output is flushed
    cli_main(argv, prog_name="digital-finance")


if __name__ == "__main__":
    main(sys.argv[1:])

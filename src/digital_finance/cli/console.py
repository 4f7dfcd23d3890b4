"""The CLI's console and its way of failing: a clear message and exit code 2, no traceback."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error that says what to do, and exit."""
    # the message is plain text: "[engine] …" must not be read as rich markup
    err_console.print("error:", style="bold red", end=" ")
    err_console.print(message, markup=False)
    raise typer.Exit(code)

"""The CLI's console and its way of failing: a clear message and exit code 2, no traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from digital_finance.lakehouse.storage import Location

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error that says what to do, and exit."""
    # the message is plain text: "[engine] …" must not be read as rich markup
    err_console.print("error:", style="bold red", end=" ")
    err_console.print(message, markup=False)
    raise typer.Exit(code)


def existing_lakehouse(root: str) -> Location:
    """The lakehouse `--output` names, with storage options from the settings; refuses a
    local folder that holds none, with what to do."""
    from digital_finance.config import ConfigError, load_config
    from digital_finance.lakehouse.storage import StorageError, location

    try:
        where = location(root, load_config(None).plain_storage_options())
    except (StorageError, ConfigError) as exc:
        fail(str(exc))
    if where.is_local and not (where.path / "_system").exists():
        fail(f"{root} holds no lakehouse; pass the lakehouse with --output")
    return where

"""`digital-finance apikey create|list|revoke`: the ingestion API's keys for service clients.

A key's secret is printed once, by `create`, on stdout alone (`KEY=$(digital-finance apikey
create ...)`), and never stored: the key file holds a salted hash. A running service sees a
revocation within about a second; it reads the file again when it changes.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from digital_finance.cli.console import console, err_console, fail

if TYPE_CHECKING:
    from digital_finance.service.auth.api_keys import ApiKeyStore

apikey_app = typer.Typer(
    help="Create, list and revoke the ingestion API's keys (docs/API.md).",
    no_args_is_help=True,
)

DEFAULT_KEYS_FILE = Path("api-keys.json")
KEYS_FILE_ENV = "DIGITAL_FINANCE_API__KEYS_FILE"

KeysFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--keys-file",
        metavar="FILE",
        help="The key file (default: \\[api] keys_file, i.e. api-keys.json).",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", metavar="FILE", help="TOML file with \\[api] settings."),
]


@apikey_app.command("create")
def create(
    owner: Annotated[
        str, typer.Option("--owner", metavar="NAME", help="Who or what will use the key.")
    ],
    role: Annotated[
        list[str],
        typer.Option(
            "--role",
            metavar="ROLE",
            help="admin, tables.read, events.write:* or events.write:DATASET. Repeatable.",
        ),
    ],
    keys_file: KeysFileOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create a key and print it once: it cannot be shown again."""
    from digital_finance.service.auth import check_role

    try:
        for name in role:
            check_role(name)  # before the file is touched
    except ValueError as exc:
        fail(str(exc))
    store = _store(keys_file, config)
    try:
        record, token = store.create(owner, role)
    except ValueError as exc:
        fail(str(exc))
    # the token alone on stdout, so a shell can capture it; everything else on stderr
    typer.echo(token)
    err_console.print(
        f"created API key {record.key_id} for {record.owner} with roles "
        f"{', '.join(record.roles)} in {store.path}; the key above will not be shown again",
        markup=False,
        soft_wrap=True,  # one line, whatever the terminal's width
    )


@apikey_app.command("list")
def list_keys(keys_file: KeysFileOpt = None, config: ConfigOpt = None) -> None:
    """List the keys: id, owner, roles, when created and revoked (never a secret or hash)."""
    from rich.table import Table
    from rich.text import Text

    store = _store(keys_file, config)
    records = store.list()
    if not records:
        err_console.print(f"no API keys in {store.path}", markup=False, soft_wrap=True)
        return
    table = Table()
    for column in ("key id", "owner", "roles", "created", "revoked"):
        table.add_column(column, no_wrap=column in ("key id", "created", "revoked"))
    for r in records:
        # Text, not str: an owner such as "[bold]ops" is shown as written, not as markup
        cells = (r.key_id, r.owner, ", ".join(r.roles), r.created, r.revoked or "-")
        table.add_row(*(Text(c) for c in cells))
    console.print(table)


@apikey_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (from list).")],
    keys_file: KeysFileOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Revoke a key: a running service refuses it within about a second."""
    from digital_finance.service.auth import UnknownKeyError

    store = _store(keys_file, config)
    try:
        record = store.revoke(key_id)
    except UnknownKeyError as exc:
        fail(str(exc))
    console.print(
        f"revoked API key {record.key_id} of {record.owner} (at {record.revoked})",
        markup=False,
        soft_wrap=True,
    )


def _store(keys_file: Path | None, config: Path | None) -> ApiKeyStore:
    from digital_finance.service.auth import ApiKeyStore

    return ApiKeyStore(keys_file if keys_file is not None else _configured(config))


def _configured(config: Path | None) -> Path:
    """`[api] keys_file` from the environment, then the file, then the default."""
    if config is None:
        # the usual case needs no settings machinery (pydantic takes 0.13 s to import)
        value = os.environ.get(KEYS_FILE_ENV)
        return Path(value) if value else DEFAULT_KEYS_FILE
    from digital_finance.settings import SettingsError, read_settings

    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
        return read_settings(data, f"config file {config}").api.keys_file
    except FileNotFoundError:
        fail(f"config file {config} does not exist")
    except tomllib.TOMLDecodeError as exc:
        fail(f"config file {config} is not valid TOML: {exc}")
    except SettingsError as exc:
        fail(str(exc))

"""API keys: salted hashes on disk, fast checks in memory, revocation seen within a second,
no key lost to two writers, and the `apikey` commands."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import threading
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from digital_finance.cli.apikey_command import apikey_app
from digital_finance.service.auth import (
    VALID_ROLES,
    ApiKeyFileError,
    ApiKeyStore,
    AuthError,
    Principal,
    UnknownKeyError,
)

TOKEN = re.compile(r"dfk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "api-keys.json"


def refused(store: ApiKeyStore, token: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        store.verify(token)
    assert info.value.status == 401
    assert 'error="invalid_token"' in info.value.www_authenticate
    return info.value


def test_a_created_key_verifies_as_its_owner_with_its_roles(path: Path) -> None:
    store = ApiKeyStore(path)
    record, token = store.create("ingest-bot", ["events.write:stocks", "tables.read"])
    found = TOKEN.fullmatch(token)
    assert found is not None and found.group(1) == record.key_id
    assert store.verify(token) == Principal(
        subject=f"key:{record.key_id}",
        name="ingest-bot",
        kind="api_key",
        roles=frozenset({"events.write:stocks", "tables.read"}),
    )
    # another store on the same file (the service, started later) knows it too
    assert ApiKeyStore(path).verify(token).name == "ingest-bot"


def test_the_file_holds_a_salted_hash_never_the_secret(path: Path) -> None:
    store = ApiKeyStore(path)
    record, token = store.create("ingest-bot", ["admin"])
    secret = token[len("dfk_0123456789ab_") :]  # it may hold "_" itself
    text = path.read_text()
    assert secret not in text and token not in text
    document = json.loads(text)
    assert document["version"] == 1
    [stored] = document["keys"]
    assert stored["key_id"] == record.key_id and stored["roles"] == ["admin"]
    salt = bytes.fromhex(stored["salt"])
    assert len(salt) == 16
    assert stored["digest"] == hashlib.sha256(salt + secret.encode()).hexdigest()
    assert stored["revoked"] is None and stored["created"].endswith("+00:00")


def test_the_file_and_its_lock_are_private_to_the_owner(path: Path) -> None:
    ApiKeyStore(path).create("ingest-bot", ["admin"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.with_name(path.name + ".lock").stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_wrong_secret_a_malformed_key_and_an_unknown_id_are_refused(path: Path) -> None:
    store = ApiKeyStore(path)
    record, token = store.create("ingest-bot", ["admin"])
    other_secret = token[:17] + ("A" if token[17] != "A" else "B") + token[18:]
    unknown_id = "dfk_" + ("0" * 12 if record.key_id != "0" * 12 else "1" * 12) + token[16:]
    for bad in (
        other_secret,
        unknown_id,
        "",
        "dfk_",
        "abc",
        token + "x",
        token.upper(),
        token[:-1],
    ):
        error = refused(store, bad)
        assert error.detail == "the API key is not valid"
        if bad:
            assert bad not in error.www_authenticate
    assert store.verify(token).subject == f"key:{record.key_id}"


def test_a_revocation_by_another_process_is_seen_within_a_second(path: Path) -> None:
    clock = Clock()
    service = ApiKeyStore(path, clock=clock)
    cli = ApiKeyStore(path)
    record, token = cli.create("ingest-bot", ["events.write:*"])
    assert service.verify(token).may_write("mutual_funds")  # loaded into memory
    cli.revoke(record.key_id)
    clock.now += 0.5
    # the file is looked at no more than once a second: still the copy in memory
    assert service.verify(token).name == "ingest-bot"
    clock.now += 0.6
    assert refused(service, token).detail == "the API key was revoked"


def test_the_revoking_store_refuses_the_key_at_once(path: Path) -> None:
    store = ApiKeyStore(path, clock=Clock())
    record, token = store.create("ingest-bot", ["admin"])
    store.verify(token)
    store.revoke(record.key_id)
    assert refused(store, token).detail == "the API key was revoked"


def test_revoking_twice_keeps_the_first_time_and_an_unknown_id_is_an_error(path: Path) -> None:
    clock = Clock()
    store = ApiKeyStore(path, clock=clock)
    record, _ = store.create("ingest-bot", ["admin"])
    first = store.revoke(record.key_id)
    clock.now += 3600
    again = store.revoke(record.key_id)
    assert first.revoked is not None and again.revoked == first.revoked
    assert [r.revoked for r in store.list()] == [first.revoked]
    with pytest.raises(UnknownKeyError, match="no API key has the id 'feedfacecafe'") as info:
        store.revoke("feedfacecafe")
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize(
    ("owner", "roles", "message"),
    [
        ("bot", ["events.write:bonds"], "unknown role 'events.write:bonds'; valid roles: admin"),
        ("bot", ["Admin"], "unknown role 'Admin'"),
        ("bot", [], "at least one role"),
        ("  ", ["admin"], "needs an owner"),
        ("bot\x1b[31m", ["admin"], "printable"),
    ],
)
def test_a_key_with_a_bad_role_or_owner_is_not_created(
    path: Path, owner: str, roles: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ApiKeyStore(path).create(owner, roles)
    assert not path.exists()


def test_no_file_means_no_keys_and_a_broken_file_refuses_rather_than_guesses(
    path: Path,
) -> None:
    store = ApiKeyStore(path, clock=Clock())
    assert store.list() == []
    assert refused(store, "dfk_0123456789ab_" + "A" * 43).detail == "the API key is not valid"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ApiKeyFileError, match="not valid JSON"):
        store.list()
    with pytest.raises(AuthError) as info:
        ApiKeyStore(path).verify("dfk_0123456789ab_" + "A" * 43)
    assert info.value.status == 503


def test_two_stores_creating_at_once_lose_no_key(path: Path) -> None:
    stores = [ApiKeyStore(path), ApiKeyStore(path)]
    tokens: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def create_many(store: ApiKeyStore) -> None:
        try:
            start.wait()
            for i in range(15):
                tokens.append(store.create(f"bot-{i}", ["tables.read"])[1])
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=create_many, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(ApiKeyStore(path).list()) == 30
    reader = ApiKeyStore(path)
    assert {reader.verify(t).subject for t in tokens} == {f"key:{r.key_id}" for r in reader.list()}


def cli_app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(apikey_app, name="apikey")
    return app


def test_the_cli_creates_lists_and_revokes_keys(path: Path) -> None:
    runner = CliRunner()
    app = cli_app()
    created = runner.invoke(
        app,
        ["apikey", "create", "--owner", "ingest-bot", "--role", "events.write:stocks",
         "--role", "tables.read", "--keys-file", str(path)],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert created.stdout == token + "\n"  # the token alone: `KEY=$(...)` captures it
    found = TOKEN.fullmatch(token)
    assert found is not None
    key_id = found.group(1)
    assert "will not be shown again" in created.stderr
    assert key_id in created.stderr and "ingest-bot" in created.stderr
    assert "events.write:stocks, tables.read" in created.stderr
    assert ApiKeyStore(path).verify(token).name == "ingest-bot"

    listed = runner.invoke(app, ["apikey", "list", "--keys-file", str(path)])
    assert listed.exit_code == 0, listed.output
    assert key_id in listed.stdout and "ingest-bot" in listed.stdout
    [stored] = json.loads(path.read_text())["keys"]
    for hidden in (stored["salt"], stored["digest"], token[17:], "salt", "digest"):
        assert hidden not in listed.output

    revoked = runner.invoke(app, ["apikey", "revoke", key_id, "--keys-file", str(path)])
    assert revoked.exit_code == 0, revoked.output
    assert f"revoked API key {key_id}" in revoked.stdout
    assert refused(ApiKeyStore(path), token).detail == "the API key was revoked"
    listed = runner.invoke(app, ["apikey", "list", "--keys-file", str(path)])
    assert stored["created"][:10] in listed.stdout and listed.stdout.count("+00:00") == 2


def test_the_cli_refuses_a_bad_role_or_an_unknown_key_with_exit_code_2(path: Path) -> None:
    runner = CliRunner()
    app = cli_app()
    bad = runner.invoke(
        app,
        ["apikey", "create", "--owner", "bot", "--role", "events.write:bonds",
         "--keys-file", str(path)],
    )  # fmt: skip
    assert bad.exit_code == 2
    assert bad.stdout == ""
    for role in VALID_ROLES:
        assert role in bad.stderr
    assert not path.exists()
    unknown = runner.invoke(app, ["apikey", "revoke", "feedfacecafe", "--keys-file", str(path)])
    assert unknown.exit_code == 2
    assert "no API key has the id 'feedfacecafe'" in unknown.stderr


def test_the_cli_takes_the_key_file_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    app = cli_app()
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "service.toml"
    config.write_text('[api]\nkeys_file = "from-config.json"\n')
    result = runner.invoke(
        app, ["apikey", "create", "--owner", "a", "--role", "admin", "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert len(ApiKeyStore(tmp_path / "from-config.json").list()) == 1
    monkeypatch.setenv("DIGITAL_FINANCE_API__KEYS_FILE", str(tmp_path / "from-env.json"))
    result = runner.invoke(app, ["apikey", "create", "--owner", "b", "--role", "admin"])
    assert result.exit_code == 0, result.output
    assert [r.owner for r in ApiKeyStore(tmp_path / "from-env.json").list()] == ["b"]
    empty = runner.invoke(app, ["apikey", "list", "--keys-file", str(tmp_path / "none.json")])
    assert empty.exit_code == 0 and "no API keys in" in empty.stderr


def test_a_remembered_key_does_not_open_the_door_to_a_wrong_secret(path: Path) -> None:
    store = ApiKeyStore(path, clock=Clock())
    _, token = store.create("ingest-bot", ["admin"])
    first = store.verify(token)
    assert store.verify(token) is first  # from memory the second time
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert refused(store, wrong).detail == "the API key is not valid"
    assert store.verify(token) is first

"""The whole batch pipeline with its tables on Azure Blob Storage (Azurite, a real emulator).

The CLI writes to `az://` and `abfss://` URIs through the same code as to a folder; every
table must equal a run into a local folder, after a crash too, and `tables`, `query` and the
exports must work on the URI.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from tests.conftest import DATA_TABLES, RUN_COLUMNS, cli_process, rows
from tests.services import azurite

pytestmark = [pytest.mark.slow, pytest.mark.azure]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[azurite.Azurite]:
    with azurite.emulated(tmp_path_factory.mktemp("azurite")) as service:
        yield service


@pytest.fixture
def container(emulator: azurite.Azurite) -> str:
    name = f"lake{uuid.uuid4().hex[:12]}"
    emulator.create_container(name)
    return name


def _remote_rows(uri: str, table: str) -> list[dict[str, Any]]:
    data = DeltaTable(f"{uri}/{table}").to_pyarrow_table().to_pylist()
    cleaned = [{k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in data]
    return sorted(cleaned, key=lambda r: repr(sorted(r.items())))


def _args(generated: Path, out: str, part: int) -> list[str]:
    # two batches: the first half of each dataset's files, then the rest
    args = ["run", "--output", out]
    for dataset, option in (("stocks", "--stocks"), ("mutual_funds", "--funds")):
        files = sorted((generated / dataset).iterdir())
        half = files[: len(files) // 2] if part == 1 else files
        for f in half:
            args += [option, str(f)]
    return args


@pytest.fixture(scope="module")
def local_lake(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "lake"
    for part in (1, 2):
        done = cli_process(*_args(generated, str(out), part))
        assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("scheme", ["az", "abfss"])
def test_two_batches_on_azure_equal_the_same_on_a_folder(
    scheme: str, generated: Path, local_lake: Path, container: str, emulator: azurite.Azurite
) -> None:
    uri = (
        f"az://{container}/lakehouse"
        if scheme == "az"
        else f"abfss://{container}@{azurite.ACCOUNT}.dfs.core.windows.net/lakehouse"
    )
    for part in (1, 2):
        done = cli_process(*_args(generated, uri, part), env=emulator.env)
        assert done.returncode == 0, done.stderr
    for table in [*DATA_TABLES, "_system/batches"]:
        assert _remote_rows(uri, table) == rows(local_lake, table), table
    again = cli_process(*_args(generated, uri, 2), env=emulator.env)
    assert again.returncode == 0 and "nothing new to ingest" in again.stdout, again.stderr


def test_a_crash_on_azure_then_a_rerun_equals_a_clean_run(
    generated: Path, local_lake: Path, container: str, emulator: azurite.Azurite
) -> None:
    uri = f"az://{container}/lakehouse"
    first = cli_process(*_args(generated, uri, 1), env=emulator.env)
    assert first.returncode == 0, first.stderr
    crashed = cli_process(*_args(generated, uri, 2),
                          env={**emulator.env, "DIGITAL_FINANCE_CRASH_AT": "before_silver_mutual_funds"})  # fmt: skip
    assert crashed.returncode == 137, crashed.stderr
    resumed = cli_process(*_args(generated, uri, 2), env=emulator.env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    for table in DATA_TABLES:
        assert _remote_rows(uri, table) == rows(local_lake, table), table


def test_tables_query_and_exports_work_on_a_uri(
    generated: Path, container: str, emulator: azurite.Azurite
) -> None:
    uri = f"az://{container}/lakehouse"
    done = cli_process(*_args(generated, uri, 1), "--format", "csv", env=emulator.env)
    assert done.returncode == 0, done.stderr
    assert f"{uri}/export/silver_stocks.csv" in done.stdout.replace("\n", "")
    listed = cli_process("tables", "--output", uri, env=emulator.env)
    assert listed.returncode == 0 and "silver/stocks" in listed.stdout, listed.stderr
    counted = cli_process("query", "SELECT count(*) AS n FROM silver.stocks", "--output", uri,
                          env=emulator.env)  # fmt: skip
    assert counted.returncode == 0, counted.stderr
    n = DeltaTable(f"{uri}/silver/stocks").to_pyarrow_table().num_rows
    assert str(n) in counted.stdout


def _batches_of(uri: str) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for row in DeltaTable(f"{uri}/_system/batches").to_pyarrow_table().to_pylist():
        found.setdefault(row["batch_id"], set()).add(Path(row["path"]).parents[1].name)
    return found


@pytest.mark.parametrize("seed", [3])
def test_writers_at_once_on_azure_one_killed_equal_a_sequential_run(
    seed: int, container: str, emulator: azurite.Azurite, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import random
    import signal
    import subprocess
    import sys
    import time

    from digital_finance.generate import generate
    from tests.conftest import REPO

    base = tmp_path_factory.mktemp("azure-writers")
    sets = []
    for i in range(3):
        generate(base / f"set{i}", 4_000, 500, seed=200 + i)
        sets.append(base / f"set{i}")
    uri = f"az://{container}/lakehouse"
    env = {**os.environ, **emulator.env, "DIGITAL_FINANCE_COMMIT_LEASE_SECONDS": "4",
           "DIGITAL_FINANCE_LOG_LEVEL": "info"}  # fmt: skip

    def args(s: Path) -> list[str]:
        return ["run", "--stocks", str(s / "stocks"), "--funds", str(s / "mutual_funds"),
                "--output", uri]  # fmt: skip

    rng = random.Random(seed)
    victim = rng.randrange(len(sets))
    procs = [subprocess.Popen([sys.executable, "-m", "digital_finance", *args(s)], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in sets]  # fmt: skip
    time.sleep(rng.uniform(1.0, 3.0))
    procs[victim].send_signal(signal.SIGKILL)
    for i, proc in enumerate(procs):
        _, err = proc.communicate(timeout=300)
        if i != victim:
            assert proc.returncode == 0, err
            assert "lost the commit lease" not in err
    final = ["run", "--output", uri]
    for s in sets:
        final += ["--stocks", str(s / "stocks"), "--funds", str(s / "mutual_funds")]
    done = cli_process(*final, env=env)
    assert done.returncode == 0, done.stderr
    batches = _batches_of(uri)
    assert all(len(v) == 1 for v in batches.values()) and sorted(batches) == [1, 2, 3], batches
    reference = base / "sequential"
    for b in sorted(batches):
        (name,) = batches[b]
        ran = cli_process(*args(base / name)[:-1], str(reference))
        assert ran.returncode == 0, ran.stderr
    for table in DATA_TABLES:
        assert _remote_rows(uri, table) == rows(reference, table), table


HOLD = """
import sys, time
from digital_finance.lakehouse.commit_lock import ObjectStoreLock
from digital_finance.lakehouse.storage import Location
with ObjectStoreLock(Location.parse(sys.argv[1])).hold("holder-run", lambda m: None):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_killed_lease_holder_is_taken_over_after_the_lease(
    container: str, emulator: azurite.Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal
    import subprocess
    import sys
    import time

    from digital_finance.lakehouse.commit_lock import ObjectStoreLock
    from digital_finance.lakehouse.storage import Location

    uri = f"az://{container}/lakehouse"
    monkeypatch.setenv("DIGITAL_FINANCE_COMMIT_LEASE_SECONDS", "3")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, uri], stdout=subprocess.PIPE, text=True,
                              env={**os.environ})  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    messages: list[str] = []
    lock = ObjectStoreLock(Location.parse(uri))
    # while the holder lives and renews, a waiter waits (and says for whom) well past the lease
    waiter_started = time.monotonic()

    def waiting(message: str) -> None:
        messages.append(message)

    import threading

    got = threading.Event()

    def wait_for_it() -> None:
        with lock.hold("waiter-run", waiting):
            got.set()

    thread = threading.Thread(target=wait_for_it)
    thread.start()
    assert not got.wait(7), "the lease was taken from a live holder"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    thread.join(timeout=30)
    assert got.is_set()
    assert time.monotonic() - waiter_started < 30
    assert messages and "holder-run" in messages[0] and f"pid {holder.pid}" in messages[0]


def test_a_storage_key_from_the_secrets_folder_never_shows_in_output_logs_or_tables(
    generated: Path, container: str, emulator: azurite.Azurite, tmp_path: Path
) -> None:
    """The emulator's account key is the canary: given by name only, it must appear nowhere."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "azurite-key").write_text(azurite.KEY)
    config = tmp_path / "rules.toml"
    config.write_text(
        f'[secrets]\nfolder = "{folder}"\n[storage.options]\naccount_name = "{azurite.ACCOUNT}"\n'
        'account_key = { secret = "azurite-key" }\nuse_emulator = "true"\n'
    )
    # the key reaches the commands only through the secret: not in their environment
    env = {k: v for k, v in os.environ.items() if k != "AZURE_STORAGE_ACCOUNT_KEY"}
    env.update({"AZURITE_BLOB_STORAGE_URL": emulator.url, "AZURE_STORAGE_USE_EMULATOR": "true",
                "DIGITAL_FINANCE_LOG_LEVEL": "debug", "DIGITAL_FINANCE_LOG_FORMAT": "json"})  # fmt: skip
    env.pop("AZURE_STORAGE_ACCOUNT_NAME", None)
    uri = f"az://{container}/lakehouse"
    outputs = []
    for part in (1, 2):
        args = [*_args(generated, uri, part), "--config", str(config)]
        if part == 2:
            crashed = cli_process(
                *args, env={**env, "DIGITAL_FINANCE_CRASH_AT": "before_gold_stock_fund_holdings"}
            )
            outputs.append(crashed.stdout + crashed.stderr)
        done = cli_process(*args, env=env)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    reader_env = {**env, "DIGITAL_FINANCE_SECRETS__FOLDER": str(folder),
                  "DIGITAL_FINANCE_STORAGE__OPTIONS__ACCOUNT_NAME": azurite.ACCOUNT,
                  "DIGITAL_FINANCE_STORAGE__OPTIONS__ACCOUNT_KEY__SECRET": "azurite-key",
                  "DIGITAL_FINANCE_STORAGE__OPTIONS__USE_EMULATOR": "true"}  # fmt: skip
    for command in (["tables", "--output", uri],
                    ["query", "SELECT count(*) FROM silver.stocks", "--output", uri],
                    ["query", "SELECT nope FROM silver.stocks", "--output", uri]):  # fmt: skip
        done = cli_process(*command, env=reader_env)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode in (0, 2), done.stderr
    assert any('"batch_id": 2' in o for o in outputs)  # the JSON logs were on
    for text in outputs:
        assert azurite.KEY not in text
    # nor in any file of the lakehouse: tables, logs, checkpoints, the lock
    import obstore
    from obstore.store import AzureStore

    store = AzureStore(container, account_name=azurite.ACCOUNT, account_key=azurite.KEY,
                       use_emulator=True)  # fmt: skip
    blobs = [o["path"] for batch in obstore.list(store) for o in batch]
    assert any(b.endswith(".parquet") for b in blobs)
    for blob in blobs:
        assert azurite.KEY.encode() not in bytes(obstore.get(store, blob).bytes()), blob

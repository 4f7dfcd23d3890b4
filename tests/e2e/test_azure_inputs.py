"""Inputs and tables both on Azure Blob Storage (Azurite, a real emulator).

The generated files (NDJSON, gzip, a JSON array) are uploaded to a container and the CLI
reads them by URI (a folder-like prefix and a glob) into a lakehouse in another container.
Every table must equal a run of the same files from a local folder into a local folder,
lineage included once the path prefix is set aside; appended lines, copies, a crash and the
landing-folder stream must behave as they do on disk.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from tests.conftest import DATA_TABLES, RUN_COLUMNS, cli_process
from tests.services import azurite

pytestmark = [pytest.mark.slow, pytest.mark.azure]

DATASETS = {"stocks": "--stocks", "mutual_funds": "--funds"}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[azurite.Azurite]:
    with azurite.emulated(tmp_path_factory.mktemp("azurite-inputs")) as service:
        yield service


def _container(emulator: azurite.Azurite, prefix: str) -> str:
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    emulator.create_container(name)
    return name


def _put(uri: str, data: bytes) -> None:
    from obstore.store import from_url

    root, _, key = uri.removeprefix("az://").partition("/")
    from_url(f"az://{root}").put(key, data)


def _upload(generated: Path, landing: str, names: dict[str, list[str]]) -> None:
    for dataset, files in names.items():
        for name in files:
            _put(f"az://{landing}/{dataset}/{name}", (generated / dataset / name).read_bytes())


def _halves(generated: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    first, second = {}, {}
    for dataset in DATASETS:
        files = sorted(p.name for p in (generated / dataset).iterdir())
        first[dataset], second[dataset] = files[: len(files) // 2], files[len(files) // 2 :]
    return first, second


def _normalised(value: Any, prefixes: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for prefix in prefixes:
            if value.startswith(prefix):
                return value.removeprefix(prefix)
    return value


def _table(uri: str, table: str, prefixes: tuple[str, ...]) -> list[dict[str, Any]]:
    data = DeltaTable(f"{uri}/{table}").to_pyarrow_table().to_pylist()
    skip = RUN_COLUMNS | {"modified_ns"}  # a blob's time is its upload's, not the file's
    cleaned = [{k: _normalised(v, prefixes) for k, v in r.items() if k not in skip} for r in data]
    return sorted(cleaned, key=lambda r: repr(sorted(r.items())))


def _run(*args: str, env: dict[str, str]) -> str:
    done = cli_process("run", *args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def local_lake(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same files, the same two batches, from a local folder into a local folder."""
    out = tmp_path_factory.mktemp("local-inputs") / "lake"
    first, _ = _halves(generated)
    args = [
        a for d, opt in DATASETS.items() for n in first[d] for a in (opt, str(generated / d / n))
    ]
    _run(*args, "--output", str(out), env={})
    _run("--stocks", str(generated / "stocks"), "--funds", str(generated / "mutual_funds"),
         "--output", str(out), env={})  # fmt: skip
    return out


def test_inputs_and_tables_on_azure_equal_a_local_run(
    generated: Path, local_lake: Path, emulator: azurite.Azurite
) -> None:
    landing, lake = _container(emulator, "landing"), _container(emulator, "lake")
    uri = f"az://{lake}/lakehouse"
    first, second = _halves(generated)
    _upload(generated, landing, first)
    # a folder-like prefix for one dataset, a glob for the other
    _run("--stocks", f"az://{landing}/stocks/", "--funds", f"az://{landing}/mutual_funds/*",
         "--output", uri, env=emulator.env)  # fmt: skip
    _upload(generated, landing, second)
    out = _run("--stocks", f"az://{landing}/stocks", "--funds", f"az://{landing}/mutual_funds/part-*",
               "--output", uri, env=emulator.env)  # fmt: skip
    assert "batch 2" in out, out
    prefixes = (f"az://{landing}/", f"{generated}/")
    for table in [*DATA_TABLES, "_system/batches"]:
        remote = _table(uri, table, prefixes)
        local = _table(str(local_lake), table, prefixes)
        assert remote == local, table
    bronze = DeltaTable(f"{uri}/bronze/stocks").to_pyarrow_table().column("source_file")
    assert {s.as_py() for s in bronze.unique()} == {
        f"az://{landing}/stocks/{n}" for n in first["stocks"] + second["stocks"]
    }
    again = cli_process(
        "run", "--stocks", f"az://{landing}/stocks/", "--output", uri, env=emulator.env
    )
    assert again.returncode == 0 and "nothing new to ingest" in again.stdout, again.stderr


def test_appended_lines_alone_are_read_and_a_copy_is_skipped(
    generated: Path, emulator: azurite.Azurite, tmp_path: Path
) -> None:
    landing = _container(emulator, "landing")
    lake = tmp_path / "lake"  # a local lakehouse reading a container
    name = sorted(p.name for p in (generated / "stocks").iterdir() if p.suffix == ".jsonl")[0]
    body = (generated / "stocks" / name).read_bytes()
    lines = body.splitlines(keepends=True)
    head, tail = b"".join(lines[:-50]), b"".join(lines[-50:])
    _put(f"az://{landing}/stocks/{name}", head)
    _run("--stocks", f"az://{landing}/stocks/", "--output", str(lake), env=emulator.env)
    before = DeltaTable(str(lake / "bronze" / "stocks")).to_pyarrow_table().num_rows
    _put(f"az://{landing}/stocks/{name}", head + tail)  # the blob rewritten with lines added
    _put(f"az://{landing}/stocks/copy-{name}", head)  # the first bytes again, another name
    out = _run("--stocks", f"az://{landing}/stocks/", "--output", str(lake), env=emulator.env)
    assert "appended since batch 1; only those are read" in out, out
    assert f"holds the same bytes as az://{landing}/stocks/{name}" in out, out
    bronze = DeltaTable(str(lake / "bronze" / "stocks")).to_pyarrow_table().to_pylist()
    assert len(bronze) == before + 50
    numbers = sorted(r["line_number"] for r in bronze if r["_batch_id"] == 2)
    assert numbers == list(range(len(lines) - 49, len(lines) + 1))
    # forgotten by its URI, the object is read again whole on the next run
    uri = f"az://{landing}/stocks/{name}"
    forgot = cli_process("forget", uri, "--output", str(lake), env=emulator.env)
    assert forgot.returncode == 0 and uri in forgot.stdout, forgot.stderr
    _run("--stocks", uri, "--output", str(lake), env=emulator.env)
    after = DeltaTable(str(lake / "bronze" / "stocks")).to_pyarrow_table()
    assert after.num_rows == len(bronze) + sum(1 for line in lines if line.strip())


def test_a_crash_with_inputs_on_azure_then_a_rerun_equals_a_clean_run(
    generated: Path, emulator: azurite.Azurite, tmp_path: Path
) -> None:
    landing = _container(emulator, "landing")
    names = {d: sorted(p.name for p in (generated / d).iterdir()) for d in DATASETS}
    _upload(generated, landing, names)
    args = ["--stocks", f"az://{landing}/stocks", "--funds", f"az://{landing}/mutual_funds"]
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    _run(*args, "--output", str(clean), env=emulator.env)
    died = cli_process("run", *args, "--output", str(crashed),
                       env={**emulator.env, "DIGITAL_FINANCE_CRASH_AT": "before_silver_stocks"})  # fmt: skip
    assert died.returncode == 137, died.stderr
    resumed = _run(*args, "--output", str(crashed), env=emulator.env)
    assert "resumed" in resumed, resumed
    for table in DATA_TABLES:
        assert _table(str(crashed), table, ()) == _table(str(clean), table, ()), table


def test_the_landing_folder_stream_reads_a_container(
    generated: Path, emulator: azurite.Azurite, tmp_path: Path
) -> None:
    landing = _container(emulator, "landing")
    names = {d: sorted(p.name for p in (generated / d).iterdir()) for d in DATASETS}
    _upload(generated, landing, names)
    streamed, ran = tmp_path / "streamed", tmp_path / "ran"
    done = cli_process("stream", "--source", "folder", "--path", f"az://{landing}", "--once",
                       "--output", str(streamed), "--config", str(_no_settle(tmp_path)),
                       env=emulator.env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    _run("--stocks", f"az://{landing}/stocks", "--funds", f"az://{landing}/mutual_funds",
         "--output", str(ran), env=emulator.env)  # fmt: skip
    for table in DATA_TABLES:
        assert _table(str(streamed), table, ()) == _table(str(ran), table, ()), table
    again = cli_process("stream", "--source", "folder", "--path", f"az://{landing}", "--once",
                        "--output", str(streamed), "--config", str(_no_settle(tmp_path)),
                        env=emulator.env)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (
        DeltaTable(str(streamed / "bronze" / "stocks")).version()
        == DeltaTable(str(ran / "bronze" / "stocks")).version()
    )


def test_an_unreachable_container_is_one_clear_error(
    emulator: azurite.Azurite, tmp_path: Path
) -> None:
    done = cli_process("run", "--stocks", f"az://missing{uuid.uuid4().hex[:8]}/stocks/",
                       "--output", str(tmp_path / "lake"), env=emulator.env)  # fmt: skip
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert "cannot be reached" in done.stderr or "no object" in done.stderr, done.stderr


def _no_settle(folder: Path) -> Path:
    config = folder / "stream.toml"
    config.write_text("[stream]\nfolder_settle_seconds = 0\n")
    return config

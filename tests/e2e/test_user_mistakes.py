"""A table of mistakes a new user makes: each ends with the right exit code and a message
that names the cause, in a line or two, never a traceback."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_process
from tests.e2e.test_interrupted_runs import PROGRESS

pytestmark = pytest.mark.slow

STOCKS = str(REPO / "data" / "stocks.json")
FUNDS = str(REPO / "data" / "mutual_funds.json")


@dataclass(frozen=True)
class Mistake:
    name: str
    args: Callable[[Path], list[str]]  # from a scratch folder holding a lakehouse `lake`
    code: int
    words: tuple[str, ...]  # the message must hold each
    prefix: tuple[str, ...] = ()


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def _folder(path: Path) -> str:
    path.mkdir(exist_ok=True)
    (path / "notes.txt").write_text("not data")
    return str(path)


def _read_only(path: Path) -> str:
    path.mkdir(exist_ok=True)
    path.chmod(0o555)
    return str(path / "lake")


NO_OVERRIDE = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")

MISTAKES = [
    Mistake("no input", lambda t: ["run", "--output", str(t / "new")], 2,
            ("give at least one input",)),
    Mistake("a path that matches nothing", lambda t: ["run", "--stocks", "stoks.json"], 2,
            ("no file or folder matches", "stoks.json")),
    Mistake("a folder with no JSON", lambda t: ["run", "--stocks", _folder(t / "empty")], 2,
            ("holds no .json",)),
    Mistake("a device as input", lambda t: ["run", "--stocks", "/dev/zero"], 2,
            ("character device",)),
    Mistake("--output is a file", lambda t: ["run", "--stocks", STOCKS, "--output",
            _write(t / "afile", "x")], 2, ("afile", "folder")),
    Mistake("--output in a read-only folder", lambda t: ["run", "--stocks", STOCKS, "--output",
            _read_only(t / "ro")], 2, ("permission denied",),
            NO_OVERRIDE if os.geteuid() == 0 else ()),
    Mistake("a lakehouse path delta-rs cannot address", lambda t: ["run", "--stocks", STOCKS,
            "--output", str(t / "lake[1]")], 2, ("cannot address",)),
    Mistake("a wrong --format", lambda t: ["run", "--stocks", STOCKS, "--format", "xml"], 2,
            ("--format must be",)),
    Mistake("a config file that is not there", lambda t: ["run", "--stocks", STOCKS,
            "--config", "nope.toml"], 2, ("nope.toml", "does not exist")),
    Mistake("a misspelled config key", lambda t: ["run", "--stocks", STOCKS, "--config",
            _write(t / "c.toml", '[[expectations]]\nname = "x"\ndataset = "stocks"\n'
                   'condition = "price > 0"\nacton = "fail"\n')], 2,
            ("acton", "did you mean `action`")),
    Mistake("a config file that is not TOML", lambda t: ["run", "--stocks", STOCKS, "--config",
            _write(t / "bad.toml", "[engine\nmemory_limit = 1")], 2, ("not valid TOML",)),
    Mistake("an unknown time zone", lambda t: ["run", "--stocks", STOCKS, "--source-tz",
            "Mars/Olympus"], 2, ("Mars/Olympus",)),
    Mistake("an unknown engine", lambda t: ["run", "--stocks", STOCKS, "--engine", "flink"], 2,
            ("flink",)),
    Mistake("a Spark setting without the Spark engine", lambda t: ["run", "--stocks", STOCKS,
            "--master", "local[2]"], 2, ("add --engine spark",)),
    Mistake("--conf without KEY=VALUE", lambda t: ["run", "--stocks", STOCKS, "--engine",
            "spark", "--conf", "spark.driver.memory"], 2, ("KEY=VALUE",)),
    Mistake("a Spark memory size that is not a size", lambda t: ["run", "--stocks", STOCKS,
            "--engine", "spark", "--conf", "spark.driver.memory=lots"], 2,
            ("spark.driver.memory=lots", "2g")),
    Mistake("a Spark SQL setting of the wrong type", lambda t: ["run", "--stocks", STOCKS,
            "--engine", "spark", "--conf", "spark.sql.shuffle.partitions=abc", "--output",
            str(t / "sparked")], 2, ("spark.sql.shuffle.partitions=abc", "'int'")),
    Mistake("SQL that does not parse", lambda t: ["query", "SELEC 1", "--output",
            str(t / "lake")], 2, ("does not parse",)),
    Mistake("SQL that writes", lambda t: ["query", "DELETE FROM silver.stocks", "--output",
            str(t / "lake")], 2, ("only reads", "DELETE")),
    Mistake("a table that does not exist", lambda t: ["query", "SELECT * FROM silver.stock",
            "--output", str(t / "lake")], 2, ("silver.stock", "available tables")),
    Mistake("a result file of an unknown kind", lambda t: ["query", "SELECT 1", "--output",
            str(t / "lake"), "--out", str(t / "r.txt")], 2, ("r.txt", ".csv")),
    Mistake("a version the tables never had", lambda t: ["query", "SELECT 1", "--output",
            str(t / "lake"), "--as-of", "99"], 2, ("no version 99",)),
    Mistake("a wrong print format", lambda t: ["query", "SELECT 1", "--output", str(t / "lake"),
            "--format", "yaml"], 2, ("--format must be",)),
    Mistake("tables of a lakehouse that is not there", lambda t: ["tables", "--output",
            str(t / "nowhere")], 2, ("does not exist",)),
    Mistake("abandoning a batch that does not exist", lambda t: ["batch", "abandon", "7",
            "--output", str(t / "lake")], 2, ("no batch 7",)),
    Mistake("abandoning a finished batch", lambda t: ["batch", "abandon", "1", "--output",
            str(t / "lake")], 2, ("batch 1 finished",)),
    Mistake("a misspelled command", lambda t: ["rn", "--stocks", STOCKS], 2,
            ("No such command",)),
]  # fmt: skip


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("made") / "lake"
    done = cli_process("run", "--stocks", STOCKS, "--funds", FUNDS, "--output", str(lake))
    assert done.returncode == 0, done.stderr
    return lake


def test_the_table_is_long_enough() -> None:
    assert len(MISTAKES) >= 20


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_each_mistake_is_explained(mistake: Mistake, lakehouse: Path, tmp_path: Path) -> None:
    shutil.copytree(lakehouse, tmp_path / "lake")
    args = mistake.args(tmp_path)
    if mistake.prefix:
        import subprocess
        import sys

        result = subprocess.run([*mistake.prefix, sys.executable, "-m", "digital_finance", *args],
                                capture_output=True, text=True, cwd=tmp_path,
                                env={**os.environ, "COLUMNS": "300"})  # fmt: skip
    else:
        result = cli_process(*args, env={"COLUMNS": "300"})
    said = result.stdout + result.stderr
    assert result.returncode == mistake.code, said
    assert "Traceback" not in said, said
    for word in mistake.words:
        assert word in said, said
    # the message, from its first line on (Spark's JVM writes its own log lines before it)
    err = result.stderr
    message = err[err.find("error:") :] if "error:" in err else err
    lines = [line for line in message.splitlines()
             if line.strip() and "─" not in line and not PROGRESS.match(line)]  # fmt: skip
    assert len(lines) <= 4, result.stderr  # a line or two (click frames its usage errors)


def test_debug_prints_the_traceback_of_an_unexpected_error(tmp_path: Path) -> None:
    target = tmp_path / "afile"
    target.write_text("x")
    plain = cli_process("run", "--stocks", STOCKS, "--output", str(target))
    debug = cli_process("--debug", "run", "--stocks", STOCKS, "--output", str(target))
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr


def test_several_paths_after_one_option_are_all_read(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", '{"stock_id": 1, "company_id": 1, "symbol": "A", '
               '"price": 1, "timestamp": 0}\n')  # fmt: skip
    b = _write(tmp_path / "b.jsonl", '{"stock_id": 2, "company_id": 1, "symbol": "B", '
               '"price": 2, "timestamp": 0}\n')  # fmt: skip
    done = cli_process("run", "--stocks", a, b, "--output", str(tmp_path / "lake"))
    assert done.returncode == 0, done.stderr
    assert "files: 2" in " ".join(done.stdout.split())
    version = cli_process("--version")
    assert version.returncode == 0 and version.stdout.startswith("digital-finance ")


def test_a_file_given_to_the_wrong_option_is_flagged_and_can_be_forgotten(tmp_path: Path) -> None:
    from deltalake import DeltaTable

    lake = str(tmp_path / "lake")
    wrong = cli_process("run", "--funds", STOCKS, "--output", lake, env={"COLUMNS": "400"})
    assert wrong.returncode == 0
    assert f"all 6 records of {STOCKS} broke the mutual_funds contract" in wrong.stderr
    assert "digital-finance forget" in wrong.stderr
    skipped = cli_process("run", "--stocks", STOCKS, "--output", lake)
    assert "nothing new to ingest" in skipped.stdout  # known by content: not read again

    forgot = cli_process("forget", STOCKS, "--output", lake, env={"COLUMNS": "400"})
    assert forgot.returncode == 0, forgot.stderr
    assert "bronze and quarantine keep the rows of the earlier read" in forgot.stdout
    again = cli_process("run", "--stocks", STOCKS, "--output", lake)
    assert again.returncode == 0, again.stderr
    silver = DeltaTable(f"{lake}/silver/stocks").to_pyarrow_table(columns=["stock_id"])
    assert sorted(silver.column("stock_id").to_pylist()) == [1, 2, 3]
    twice = cli_process("forget", str(tmp_path / "never.json"), "--output", lake)
    assert twice.returncode == 2 and "never ingested" in twice.stderr


def test_a_run_logged_to_a_file_gets_timed_progress_lines(tmp_path: Path) -> None:
    done = cli_process("run", "--stocks", STOCKS, "--funds", FUNDS, "--output",
                       str(tmp_path / "lake"))  # fmt: skip
    assert done.returncode == 0
    stages = [line for line in done.stderr.splitlines() if PROGRESS.match(line)]
    assert any("reading 2 file(s)" in line for line in stages), done.stderr
    assert any("writing silver/stocks" in line for line in stages), done.stderr


def test_config_check_prints_each_setting_with_its_source_and_no_secret(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'source_tz = "America/New_York"\n[engine]\nmemory_limit = "2GB"\n'
        '[storage.options]\naccount_key = { secret = "lake-key" }\n'
    )
    canary = "canary-7f3a9c"
    env = {"DIGITAL_FINANCE_SECRET_LAKE_KEY": canary, "DIGITAL_FINANCE_ENGINE__THREADS": "2",
           "COLUMNS": "300"}  # fmt: skip
    checked = cli_process("config", "check", str(config), env=env)
    assert checked.returncode == 0, checked.stderr
    out = checked.stdout
    assert 'source_tz = "America/New_York"    (file)' in out
    assert "engine.threads = 2    (environment: DIGITAL_FINANCE_ENGINE__THREADS)" in out
    assert 'engine.silver_write = "auto"    (default)' in out
    assert 'secret "lake-key" (value not shown)' in out
    assert canary not in out + checked.stderr
    missing = cli_process("config", "check", str(config), env={"COLUMNS": "300"})
    assert missing.returncode == 2 and "lake-key" in missing.stderr  # a secret not found

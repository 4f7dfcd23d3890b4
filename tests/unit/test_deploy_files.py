"""The deployment recipes, checked offline: databricks.yml and deploy/spark-submit.sh.

What cannot be checked here (a workspace, the secret scope, the storage account) is left to
`databricks bundle validate`; see docs/DATABRICKS.md. One slow test runs spark-submit for real.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

BUNDLE = REPO / "databricks.yml"
SCRIPT = REPO / "deploy" / "spark-submit.sh"
DRIVER = REPO / "deploy" / "spark_submit_main.py"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))

# the CLI's own pattern for ${...} references (databricks/cli libs/dyn/dynvar/ref.go)
_NAME = r"[a-zA-Z]+([-_]*[a-zA-Z0-9]+)*"
REFERENCE = re.compile(rf"\$\{{({_NAME}(\.{_NAME}(\[[0-9]+\])*)*(\[[0-9]+\])*)\}}")
SECRET_REFERENCE = re.compile(r"\{\{secrets/[\w.@-]+/[\w.@-]+\}\}")
# Databricks Runtime -> Apache Spark, from the runtime release notes (17.3 LTS = 4.0.0,
# 18 LTS = 4.1.0, 19 = 4.2.0; https://docs.azure.cn/zh-tw/databricks/release-notes/runtime/)
RUNTIME_SPARK = {"17.3": "4.0", "18": "4.1", "19": "4.2"}
# keys that name things rather than hold them
STRUCTURAL_KEYS = {"task_key", "job_cluster_key", "environment_key"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    yaml = pytest.importorskip(
        "yaml",
        reason="PyYAML is not installed; add pyyaml to the dev extra to check databricks.yml",
    )
    data = yaml.safe_load(BUNDLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _resolve(value: str, bundle: dict[str, Any]) -> str:
    """`value` with ${var.x} replaced by the variable's default, or by `VAR_x` without one."""

    def one(match: re.Match[str]) -> str:
        path = match.group(1)
        if not path.startswith("var."):
            return match.group(0)
        declared = bundle["variables"][path.removeprefix("var.")]
        return str(declared.get("default", f"VAR_{path.removeprefix('var.')}"))

    return REFERENCE.sub(one, value)


PIPELINE, STREAM = "digital_finance_pipeline", "digital_finance_stream"


def _the_task(
    bundle: dict[str, Any], name: str = PIPELINE
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A job and its single python_wheel_task."""
    job = bundle["resources"]["jobs"][name]
    found = [task for task in job["tasks"] if "python_wheel_task" in task]
    assert len(found) == 1, f"expected exactly one python_wheel_task in {name}"
    return job, found[0]


def _the_cluster(bundle: dict[str, Any], name: str = PIPELINE) -> dict[str, Any]:
    job, task = _the_task(bundle, name)
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    assert task["job_cluster_key"] in clusters, "the task must run on one of the job's clusters"
    cluster: dict[str, Any] = clusters[task["job_cluster_key"]]
    return cluster


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str, str]]:
    """(path, key, value) of every string value anywhere in `node`; list items have key [i]."""
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, value in items:
        name = str(key) if isinstance(node, dict) else f"[{key}]"
        if isinstance(value, str):
            yield path, name, value
        else:
            yield from _strings(value, f"{path}.{name}")


# --------------------------------------------------------------------------------------------
# databricks.yml


def test_bundle_builds_the_plain_wheel(bundle: dict[str, Any]) -> None:
    artifacts = list(bundle["artifacts"].values())
    assert len(artifacts) == 1
    artifact = artifacts[0]
    assert artifact["type"] == "whl"
    build = artifact["build"]
    assert "pip wheel" in build and "--no-deps" in build and "-w dist" in build
    assert "[" not in build, "the job's wheel must not be built with extras such as [spark]"


def test_wheel_task_runs_the_console_script(bundle: dict[str, Any]) -> None:
    _, task = _the_task(bundle)
    wheel_task = task["python_wheel_task"]
    assert wheel_task["package_name"] == "digital_finance"
    assert _normalize(wheel_task["package_name"]) == _normalize(PYPROJECT["project"]["name"])
    scripts = PYPROJECT["project"]["scripts"]
    assert wheel_task["entry_point"] == "digital-finance"
    assert scripts[wheel_task["entry_point"]] == "digital_finance.cli.main:main"


def test_wheel_task_runs_the_spark_engine_into_abfss(bundle: dict[str, Any]) -> None:
    _, task = _the_task(bundle)
    parameters = task["python_wheel_task"]["parameters"]
    assert all(isinstance(p, str) for p in parameters)
    assert parameters[:3] == ["run", "--engine", "spark"]
    options = dict(zip(parameters[3::2], parameters[4::2], strict=True))
    assert set(options) == {"--stocks", "--funds", "--output"}
    assert options["--stocks"].startswith("${var.input_volume}/")
    assert options["--funds"].startswith("${var.input_volume}/")
    output = _resolve(options["--output"], bundle)
    assert re.fullmatch(
        r"abfss://VAR_container@VAR_storage_account\.dfs\.core\.windows\.net/.+", output
    )


def test_the_job_installs_only_the_wheel(bundle: dict[str, Any]) -> None:
    """Databricks Runtime brings Spark and Delta: nothing may install pyspark or delta-spark."""
    _, task = _the_task(bundle)
    assert task["libraries"] == [{"whl": "./dist/*.whl"}]
    base = " ".join(PYPROJECT["project"]["dependencies"]).lower()
    assert "pyspark" not in base and "delta-spark" not in base


def test_job_cluster_autoscales_on_a_spark_42_runtime(bundle: dict[str, Any]) -> None:
    cluster = _the_cluster(bundle)
    assert "num_workers" not in cluster
    low, high = cluster["autoscale"]["min_workers"], cluster["autoscale"]["max_workers"]
    assert isinstance(low, int) and isinstance(high, int)
    # the Clusters API: "max_workers must be strictly greater than min_workers"
    assert 1 <= low < high
    runtime = _resolve(cluster["spark_version"], bundle)
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\.x-scala2\.13", runtime)
    assert found, f"not a standard runtime key: {runtime}"
    pinned = next(
        d for d in PYPROJECT["project"]["optional-dependencies"]["spark"] if "pyspark" in d
    )
    pinned_spark = ".".join(pinned.split("==")[1].split(".")[:2])
    assert RUNTIME_SPARK.get(found.group(1)) == pinned_spark == "4.2"
    assert cluster["data_security_mode"] == "SINGLE_USER"  # reads /Volumes, keeps spark.hadoop.*


def test_storage_credentials_come_from_the_secret_scope(bundle: dict[str, Any]) -> None:
    conf = _the_cluster(bundle)["spark_conf"]
    prefix = "spark.hadoop.fs.azure.account."
    assert conf[prefix + "auth.type"] == "OAuth"
    assert conf[prefix + "oauth.provider.type"].endswith(".ClientCredsTokenProvider")
    assert conf[prefix + "oauth2.client.id"] == "${var.sp_client_id}"
    assert (
        conf[prefix + "oauth2.client.secret"]
        == "{{secrets/${var.secret_scope}/${var.sp_secret_name}}}"
    )
    assert conf[prefix + "oauth2.client.endpoint"] == (
        "https://login.microsoftonline.com/${var.tenant_id}/oauth2/token"
    )
    # the commit lease is written by the driver with obstore: the same principal, from env
    env = _the_cluster(bundle)["spark_env_vars"]
    assert env["AZURE_CLIENT_ID"] == conf[prefix + "oauth2.client.id"]
    assert env["AZURE_TENANT_ID"] == "${var.tenant_id}"
    assert env["AZURE_CLIENT_SECRET"] == conf[prefix + "oauth2.client.secret"]


def test_no_secret_is_written_in_the_bundle(bundle: dict[str, Any]) -> None:
    sensitive = {"secret", "key", "password", "token", "sas", "credential"}
    checked = 0
    for path, key, value in _strings(bundle):
        if "{{secrets/" in value:
            # a secret reference must be the whole value, or the cluster does not resolve it
            assert SECRET_REFERENCE.fullmatch(_resolve(value, bundle)), f"{path}.{key}: {value}"
        last = re.split(r"[._]", key.lower())[-1]
        if last in sensitive and key not in STRUCTURAL_KEYS:
            assert SECRET_REFERENCE.fullmatch(_resolve(value, bundle)), (
                f"{path}.{key} must be a {{{{secrets/<scope>/<key>}}}} reference, not a value"
            )
            checked += 1
    assert checked >= 1, "the client secret entry was not found"
    for name in bundle["variables"]:
        # variables end up in plain text (CLI flags, env vars, the deployed job): names only
        last = re.split(r"[._]", name.lower())[-1]
        assert last not in sensitive, f"variable {name} looks like it holds a secret"


def test_the_stream_job_runs_the_spark_stream_from_event_hubs(bundle: dict[str, Any]) -> None:
    job, task = _the_task(bundle, STREAM)
    parameters = task["python_wheel_task"]["parameters"]
    assert all(isinstance(p, str) for p in parameters)
    assert parameters[:6] == ["stream", "--engine", "spark", "--source", "kafka", "--once"]
    options: dict[str, list[str]] = {}
    for flag, value in zip(parameters[6::2], parameters[7::2], strict=True):
        options.setdefault(flag, []).append(value)
    assert sorted(_resolve(t, bundle) for t in options["--topic"]) == [
        "mutual_funds=mutual_funds",
        "stocks=stocks",
    ]
    assert options["--output"] == _the_task(bundle)[1]["python_wheel_task"]["parameters"][-1:]
    assert int(_resolve(options["--max-batch-records"][0], bundle)) > 0
    config = options["--config"][0]
    assert config.startswith("${workspace.file_path}/")
    assert (REPO / config.removeprefix("${workspace.file_path}/")).is_file()
    assert job["max_concurrent_runs"] == 1 and job["schedule"]["pause_status"] == "UNPAUSED"
    # the driver lists the topics' partitions with the `kafka` extra's client
    pinned = next(
        d for d in PYPROJECT["project"]["optional-dependencies"]["kafka"] if "confluent" in d
    )
    assert task["libraries"] == [{"whl": "./dist/*.whl"}, {"pypi": {"package": pinned}}]


def test_the_stream_job_reads_the_event_hubs_secret_the_config_names(
    bundle: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from digital_finance.config import load_config
    from digital_finance.engines.spark.stream import spark_kafka_options
    from digital_finance.settings import resolved
    from digital_finance.streaming.kafka_config import connection

    cluster = _the_cluster(bundle, STREAM)
    assert cluster["spark_conf"] == _the_cluster(bundle)["spark_conf"]
    env = cluster["spark_env_vars"]
    reference = env["DIGITAL_FINANCE_SECRET_EVENTHUBS_CONNECTION"]
    assert SECRET_REFERENCE.fullmatch(_resolve(reference, bundle))
    assert _resolve(reference, bundle).endswith("/eventhubs-connection}}")
    # what the cluster puts in that variable is what the job's config file resolves
    monkeypatch.setenv(
        "DIGITAL_FINANCE_SECRET_EVENTHUBS_CONNECTION",
        "Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=k",
    )
    config = load_config(REPO / "deploy" / "databricks-stream.toml")
    assert config.settings is not None
    kafka = config.settings.stream.kafka
    conn = connection(None, {}, resolved(kafka.event_hubs_connection_string, config.settings))
    options = spark_kafka_options(conn)
    assert options["kafka.bootstrap.servers"] == "ns1.servicebus.windows.net:9093"
    assert "SharedAccessKey=k" in options["kafka.sasl.jaas.config"]


def test_deletion_vectors_are_disabled(bundle: dict[str, Any]) -> None:
    conf = _the_cluster(bundle)["spark_conf"]
    assert conf["spark.databricks.delta.properties.defaults.enableDeletionVectors"] == "false"


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


def test_no_reference_in_a_key(bundle: dict[str, Any]) -> None:
    """The CLI substitutes ${...} in values only (databricks/cli libs/dyn/dynvar/resolve.go)."""
    assert [k for k in _keys(bundle) if "${" in k] == []


def test_every_variable_reference_is_declared_and_every_variable_used(
    bundle: dict[str, Any],
) -> None:
    """The CLI fails on undeclared references and on declared variables without a value."""
    declared = set(bundle["variables"])
    used = {
        m.group(1).removeprefix("var.")
        for _, _, value in _strings(bundle)
        for m in REFERENCE.finditer(value)
        if m.group(1).startswith("var.")
    }
    assert used <= declared, f"undeclared: {used - declared}"
    assert declared <= used, f"declared but unused: {declared - used}"
    for target in bundle["targets"].values():
        assert set(target.get("variables", {})) <= declared


def test_targets_dev_and_prod(bundle: dict[str, Any]) -> None:
    targets = bundle["targets"]
    assert targets["dev"]["mode"] == "development" and targets["dev"].get("default") is True
    assert targets["prod"]["mode"] == "production"
    # production mode needs an explicit root_path (databricks/cli validate_target_mode.go)
    assert targets["prod"]["workspace"]["root_path"]
    # development writes to its own lake
    assert targets["dev"]["variables"]["output_dir"] != bundle["variables"]["output_dir"]["default"]


def test_bundle_does_not_upload_scratch_files(bundle: dict[str, Any]) -> None:
    excluded = bundle["sync"]["exclude"]
    assert ".tmp/**" in excluded and ".cache/**" in excluded


# --------------------------------------------------------------------------------------------
# deploy/spark-submit.sh and deploy/spark_submit_main.py


def _script(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


def test_spark_submit_script_is_valid_bash() -> None:
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.access(SCRIPT, os.X_OK), "deploy/spark-submit.sh should be executable"


def test_spark_submit_script_prints_help() -> None:
    done = _script("--help")
    assert done.returncode == 0, done.stderr
    for word in ("Usage:", "MASTER", "DELTA_JARS_DIR", "SPARK_SUBMIT", "EXTRA_SPARK_SUBMIT_ARGS",
                 "--archives", "venv-pack"):  # fmt: skip
        assert word in done.stdout
    assert _script().returncode == 2  # no arguments: usage on stderr


@pytest.fixture
def fake_wheel(tmp_path: Path) -> Path:
    wheel = tmp_path / "digital_finance-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("digital_finance/__init__.py", "")
    return wheel


def test_spark_submit_command_with_local_jars(fake_wheel: Path, tmp_path: Path) -> None:
    jars = tmp_path / "jars"
    jars.mkdir()
    for name in ("delta-spark_4.2_2.13-4.4.0.jar", "delta-storage-4.4.0.jar"):
        (jars / name).write_bytes(b"")
    args = ["run", "--engine", "spark", "--stocks", "in/stocks", "--output", "/tmp/lake"]
    done = _script(
        *args,
        env={"DRY_RUN": "1", "WHEEL": str(fake_wheel), "DELTA_JARS_DIR": str(jars),
             "MASTER": "local[2]", "PYTHON": sys.executable, "SPARK_SUBMIT": "my-spark-submit",
             "EXTRA_SPARK_SUBMIT_ARGS": "--conf spark.executor.memory=2g"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    words = done.stdout.splitlines()
    assert words[0] == "my-spark-submit"
    assert words[words.index("--master") + 1] == "local[2]"
    assert words[words.index("--jars") + 1] == (
        f"{jars}/delta-spark_4.2_2.13-4.4.0.jar,{jars}/delta-storage-4.4.0.jar"
    )
    assert "--packages" not in words
    confs = {words[i + 1] for i, w in enumerate(words) if w == "--conf"}
    assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in confs
    assert (
        "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog" in confs
    )
    assert "spark.databricks.delta.properties.defaults.enableDeletionVectors=false" in confs
    assert "spark.executor.memory=2g" in confs
    assert words[words.index("--py-files") + 1].endswith("digital_finance-0.1.0-py3-none-any.zip")
    app = words.index(str(DRIVER))
    assert words[app + 1 :] == args


def test_spark_submit_command_without_jars_uses_packages(fake_wheel: Path) -> None:
    done = _script("run", env={"DRY_RUN": "1", "WHEEL": str(fake_wheel), "DELTA_JARS_DIR": ""})
    assert done.returncode == 0, done.stderr
    words = done.stdout.splitlines()
    assert words[words.index("--packages") + 1] == "io.delta:delta-spark_4.2_2.13:4.4.0"


def test_spark_submit_script_explains_missing_jars(fake_wheel: Path, tmp_path: Path) -> None:
    done = _script(
        "run", env={"DRY_RUN": "1", "WHEEL": str(fake_wheel), "DELTA_JARS_DIR": str(tmp_path)}
    )
    assert done.returncode == 1
    assert (
        "delta-spark_4.2_2.13-4.4.0.jar is missing" in done.stderr and "delta_jars" in done.stderr
    )


def test_driver_script_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, str(DRIVER), "run", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "--engine" in done.stdout and "--output" in done.stdout


# --------------------------------------------------------------------------------------------
# the real thing (needs the Spark engine, Java 17, the Delta jars, and PyPI to build the wheel)


@pytest.mark.spark
@pytest.mark.slow
def test_spark_submit_runs_the_pipeline_locally(tmp_path: Path) -> None:
    from deltalake import DeltaTable

    from digital_finance.engines.spark.jars import delta_jars

    jars = REPO / ".cache" / "spark-jars"
    delta_jars(jars)  # fetched from Maven Central once, then cached
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "digital_finance", "generate", "--stocks", "200", "--funds", "40",
         "--out", str(data)],
        check=True, capture_output=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    lake = tmp_path / "lake"
    done = _script(
        "run", "--engine", "spark", "--stocks", str(data / "stocks"),
        "--funds", str(data / "mutual_funds"), "--output", str(lake),
        env={"MASTER": "local[2]", "DELTA_JARS_DIR": str(jars), "PYTHON": sys.executable,
             "SPARK_SUBMIT": str(Path(sys.executable).parent / "spark-submit")},
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    expected = json.loads((data / "expected.json").read_text(encoding="utf-8"))
    for dataset in ("stocks", "mutual_funds"):
        silver = DeltaTable(str(lake / "silver" / dataset))
        assert silver.to_pyarrow_table().num_rows == expected["distinct_valid_keys"][dataset]
        bronze = DeltaTable(str(lake / "bronze" / dataset))
        assert bronze.to_pyarrow_table().num_rows == expected["records"][dataset]
        protocol = silver.protocol()
        assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)

"""What the Spark stream hands Spark's Kafka source: options, secrets, starting offsets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from digital_finance.engines.spark.stream import (
    REDACTION,
    spark_kafka_options,
    starting_offsets,
)
from digital_finance.streaming.kafka_config import KafkaConfigError, connection

EVENT_HUBS = (
    'Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=abc"def=='
)


def test_a_plain_broker_becomes_kafka_prefixed_java_options() -> None:
    conn = connection("127.0.0.1:9092", {"fetch.min.bytes": "1", "group.id": "ignored"})
    assert spark_kafka_options(conn) == {
        "kafka.bootstrap.servers": "127.0.0.1:9092",
        "kafka.fetch.min.bytes": "1",
    }


def test_event_hubs_signs_in_with_the_connection_string_in_a_redacted_jaas_config() -> None:
    conn = connection(None, {}, SecretStr(EVENT_HUBS))
    options = spark_kafka_options(conn)
    assert options["kafka.bootstrap.servers"] == "ns1.servicebus.windows.net:9093"
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.sasl.mechanism"] == "PLAIN"
    jaas = options["kafka.sasl.jaas.config"]
    assert jaas.startswith("org.apache.kafka.common.security.plain.PlainLoginModule required")
    assert 'username="$ConnectionString"' in jaas
    assert 'SharedAccessKey=abc\\"def==' in jaas  # a quote in the secret cannot end the value
    assert not any(k.startswith("kafka.sasl.password") or k.endswith("username") for k in options)
    import re

    assert re.search(REDACTION["spark.sql.redaction.options.regex"], "kafka.sasl.jaas.config")


def test_on_databricks_the_login_module_is_the_shaded_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    options = spark_kafka_options(connection(None, {}, SecretStr(EVENT_HUBS)))
    assert options["kafka.sasl.jaas.config"].startswith("kafkashaded.org.apache.kafka.")


def test_scram_signs_in_with_the_scram_login_module() -> None:
    conn = connection(
        "broker:9093",
        {"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
         "sasl.username": "app", "sasl.password": SecretStr("pw")},
    )  # fmt: skip
    options = spark_kafka_options(conn)
    assert options["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert options["kafka.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.scram.ScramLoginModule required"
    )
    assert 'username="app" password="pw"' in options["kafka.sasl.jaas.config"]


def test_librdkafka_only_settings_and_other_secrets_are_refused_by_name() -> None:
    conn = connection("broker:9093", {"ssl.ca.location": "/ca.pem", "ssl.key.password": "x"})
    with pytest.raises(KafkaConfigError, match=r"ssl\.ca\.location, ssl\.key\.password"):
        spark_kafka_options(conn)


def test_entra_id_is_refused_with_what_to_use_instead() -> None:
    conn = connection("ns1.servicebus.windows.net:9093", {}, entra_id=True)
    with pytest.raises(KafkaConfigError, match="connection string"):
        spark_kafka_options(conn)


def test_the_query_starts_where_the_tables_stand_and_earliest_elsewhere() -> None:
    assert starting_offsets({}, {"stocks": 2}) == "earliest"
    assert starting_offsets({"other/0": 5}, {"stocks": 2}) == "earliest"
    start = json.loads(
        starting_offsets({"stocks/1": 40, "stocks/0": 7}, {"stocks": 3, "mutual_funds": 1})
    )
    assert start == {"stocks": {"0": 7, "1": 40, "2": -2}, "mutual_funds": {"0": -2}}


def test_spark_names_of_landing_files_become_the_pipelines(tmp_path: Any) -> None:
    from digital_finance.engines.spark.folder_stream import _local_path, _spark_path

    folder = tmp_path / "landing dir"
    assert _spark_path(str(folder)).startswith("file:///")
    assert _local_path(_spark_path(str(folder / "stocks" / "a b.jsonl"))) == str(
        folder.resolve() / "stocks" / "a b.jsonl"
    )  # spaces survive the URI's quoting
    uri = "abfss://landing@acct.dfs.core.windows.net/in/stocks/x.jsonl"
    assert _spark_path(uri) == _local_path(uri) == uri


def test_the_spark_stream_refuses_sources_it_has_not_and_a_folder_without_a_path() -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    def stream(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "digital_finance", "stream", "--engine", "spark", *args],
            capture_output=True, text=True, cwd=REPO, timeout=120,
        )  # fmt: skip

    mqtt = stream("--source", "mqtt", "--output", "lake")
    assert mqtt.returncode == 2
    assert "Kafka (and Event Hubs) or a landing folder" in " ".join(mqtt.stderr.split())
    folder = stream("--source", "folder", "--output", "lake")
    assert folder.returncode == 2
    assert "--source folder needs --path DIR" in " ".join(folder.stderr.split())

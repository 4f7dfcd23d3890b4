"""Kafka stream tests' common steps: fresh topics, the command line, exactly-once checks."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import REPO
from tests.services import kafka as kafka_service
from tests.streaming.compare import batch_reference, table_differences
from tests.streaming.messages import Msg


def fresh_topics(broker: kafka_service.Kafka) -> dict[str, str]:
    """Fresh topics for one test: dataset -> topic."""
    tag = uuid.uuid4().hex[:8]
    topics = {"stocks": f"stocks-{tag}", "mutual_funds": f"funds-{tag}"}
    for topic in topics.values():
        broker.create_topic(topic, partitions=4)
    return topics


def stream_args(
    broker: kafka_service.Kafka, topics: dict[str, str], lake: Path, *extra: str
) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "digital_finance",
        "stream",
        "--source",
        "kafka",
        "--bootstrap-servers",
        broker.bootstrap,
        "--output",
        str(lake),
        "--group",
        f"g-{topics['stocks']}",
    ]
    for dataset, topic in topics.items():
        args += ["--topic", f"{topic}={dataset}"]
    return args + list(extra)


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ}
        )


def bronze_rows(lake: Path) -> int:
    from deltalake import DeltaTable

    return sum(DeltaTable(str(lake / "bronze" / d)).count() for d in ("stocks", "mutual_funds"))


def assert_exactly_once(lake: Path, msgs: list[Msg], folder: Path) -> None:
    """Every message once in bronze; every table as `run` makes it of the same records."""
    assert bronze_rows(lake) == len(msgs)
    assert table_differences(lake, batch_reference(msgs, folder)) == []

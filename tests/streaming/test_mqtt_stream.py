"""`digital-finance stream --source mqtt` against a real Mosquitto: no acknowledged message
lost, none doubled, through consumer kills and a broker restart.

Stock events are published as IoT Hub devices publish telemetry, on
`devices/{deviceId}/messages/events/` (a device per key, so a key's versions keep their
order), holdings on `holdings/{n}`; the lakehouse is compared with `digital-finance run` on
the same messages as files.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.services import mosquitto
from tests.streaming.compare import batch_reference, run_cli, table_differences
from tests.streaming.messages import Msg, messages

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mosquitto.Mosquitto]:
    b = mosquitto.start(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def msgs(tmp_path_factory: pytest.TempPathFactory) -> list[Msg]:
    """The generated messages, each byte-identical repeat given trailing spaces.

    MQTT messages carry no id: a repeat of the same bytes on one topic cannot be told from
    the broker delivering the first again after a crash (docs/STREAMING.md, "MQTT"). Real
    telemetry carries a counter or a time; trailing spaces keep each record's JSON as it
    was (an exact duplicate is still one for silver) while the messages differ.
    """
    from digital_finance.generate import generate

    folder = tmp_path_factory.mktemp("gen-mqtt")
    generate(folder, 20_000, 2_000, seed=5)
    seen: dict[bytes, int] = {}
    out = []
    for m in messages(folder):
        n = seen.get(m.value, 0)
        seen[m.value] = n + 1
        out.append(Msg(m.dataset, m.key, m.value + b" " * n))
    return out


def _topic(m: Msg, tag: str) -> str:
    device = int(hashlib.sha256(m.key or m.value).hexdigest(), 16) % 4
    if m.dataset == "stocks":
        return f"{tag}/devices/kiosk-{device}/messages/events/"
    return f"{tag}/holdings/{device}"


def publish(address: str, msgs: list[Msg], tag: str) -> int:
    """Publish at QoS 1; returns how many the broker acknowledged (all, or it fails)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    host, port = address.rsplit(":", 1)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"publisher-{uuid.uuid4().hex[:6]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, int(port))
    client.loop_start()
    try:
        sent = [client.publish(_topic(m, tag), m.value, qos=1) for m in msgs]
        for info in sent:
            info.wait_for_publish(timeout=60)
        acked = sum(1 for info in sent if info.is_published())
    finally:
        client.loop_stop()
        client.disconnect()
    assert acked == len(msgs), f"the broker acknowledged {acked} of {len(msgs)}"
    return acked


def _args(broker: mosquitto.Mosquitto, lake: Path, tag: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "digital_finance", "stream", "--source", "mqtt",
            "--broker", broker.address, "--group", f"consumer-{tag}", "--output", str(lake),
            "--topic", f"{tag}/devices/+/messages/events/#=stocks",
            "--topic", f"{tag}/holdings/#=mutual_funds", *extra]  # fmt: skip


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ}
        )


def _bronze_rows(lake: Path) -> int:
    from deltalake import DeltaTable

    total = 0
    for d in ("stocks", "mutual_funds"):
        if (lake / "bronze" / d / "_delta_log").exists():
            total += DeltaTable(str(lake / "bronze" / d)).count()
    return total


def _wait_rows(lake: Path, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _bronze_rows(lake) >= n:
            return
        time.sleep(0.5)
    raise AssertionError(f"bronze reached {_bronze_rows(lake)} of {n} rows in {timeout} s")


def test_consumer_kills_and_a_broker_restart_lose_and_double_nothing(
    broker: mosquitto.Mosquitto, msgs: list[Msg], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    lake, log = tmp_path / "lake", tmp_path / "stream.log"
    args = _args(broker, lake, tag, "--trigger", "0.3", "--max-batch-records", "1500")
    thirds = [
        msgs[: len(msgs) // 3],
        msgs[len(msgs) // 3 : 2 * len(msgs) // 3],
        msgs[2 * len(msgs) // 3 :],
    ]
    consumer = _start(args, log)
    try:
        time.sleep(3)  # subscribed: the persistent session queues from here on
        publish(broker.address, thirds[0], tag)
        time.sleep(1.0)
        consumer.send_signal(signal.SIGKILL)  # mid-stream: held messages unacknowledged
        consumer.wait(timeout=30)
        publish(broker.address, thirds[1], tag)  # queued by the broker while it is down
        consumer = _start(args, log)
        time.sleep(1.5)
        broker.restart()  # the consumer reconnects; what it held comes again, flagged DUP
        publish(broker.address, thirds[2], tag)
        time.sleep(1.0)
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(timeout=30)
        consumer = _start(args, log)
        _wait_rows(lake, len(msgs))
        time.sleep(2)  # anything delivered twice would land now
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if consumer.poll() is None:
            consumer.kill()
    text = log.read_text()
    assert text.count("finished after an interruption") + text.count("batch") > 3, text[-2000:]
    assert _bronze_rows(lake) == len(msgs), text[-3000:]
    assert table_differences(lake, batch_reference(msgs, tmp_path)) == []
    # the device id is in the lineage
    from deltalake import DeltaTable

    files = set(
        DeltaTable(str(lake / "bronze" / "stocks"))
        .to_pyarrow_table(columns=["source_file"])["source_file"]
        .to_pylist()
    )
    assert {f.split("/")[2] for f in files} == {f"kiosk-{d}" for d in range(4)}
    assert all(f.startswith(f"consumer-{tag}:{tag}/devices/") for f in files)


def test_once_takes_what_is_queued_and_exits(
    broker: mosquitto.Mosquitto, msgs: list[Msg], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    lake = tmp_path / "lake"
    first = run_cli(_args(broker, lake, tag, "--once"), timeout=120)
    assert first.returncode == 0, first.stderr  # subscribes: the session exists from here on
    few = msgs[:3000]
    publish(broker.address, few, tag)
    second = run_cli(_args(broker, lake, tag, "--once"), timeout=120)
    assert second.returncode == 0, second.stderr
    assert "caught up" in second.stderr
    assert _bronze_rows(lake) == len(few)

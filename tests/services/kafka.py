"""A single-node Kafka broker (KRaft) from Apache Kafka's jars on Maven Central.

`make setup` copies the jars into `.cache/kafka/libs/` (Maven, once; `fetch` does the same
when they are missing). `start` formats a data folder, runs the broker and controller in
one JVM on two free loopback ports and waits until it answers; `restart` brings the same
broker back on the same ports with its data, as after a crash.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIBS = REPO / ".cache" / "kafka" / "libs"
POM = Path(__file__).with_name("kafka-pom.xml")


def fetch() -> Path:
    """The broker's jars, copied from Maven Central when missing."""
    if (LIBS / ".complete").exists():
        return LIBS
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Kafka's jars are not in .cache/kafka/libs and Maven is not installed")
    LIBS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [mvn, "-q", "-B", f"-Dmaven.repo.local={REPO / '.cache' / 'kafka' / 'm2'}", "-f", str(POM),
         "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies",
         f"-DoutputDirectory={LIBS}"],
        check=True, capture_output=True,
    )  # fmt: skip
    (LIBS / ".complete").touch()
    return LIBS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Kafka:
    """A running broker: where it listens, its data, its process."""

    folder: Path
    port: int
    controller_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _properties(self) -> Path:
        path = self.folder / "server.properties"
        path.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.folder / 'data'}",
                    "num.partitions=4",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    # poison-message tests send a 50 MB message: the broker must take it
                    "message.max.bytes=62914560",
                    "replica.fetch.max.bytes=62914560",
                ]
            )
            + "\n"
        )
        return path

    def _java(self, *args: str) -> list[str]:
        java = shutil.which("java") or "java"
        return [java, "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-cp", f"{fetch()}/*", *args]

    def format(self) -> None:
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(self._properties())),
            check=True, capture_output=True,
        )  # fmt: skip

    def run(self) -> None:
        log = open(self.folder / "broker.log", "ab")  # noqa: SIM115 - the broker's own log
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(self._properties())),
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ},
        )  # fmt: skip
        self.wait_ready()

    def wait_ready(self, seconds: float = 60) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # the port first: the client would log every refusal
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = (self.folder / "broker.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Kafka exited with {self.process.returncode}:\n{tail}")
            try:
                admin.list_topics(timeout=1)
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError("Kafka did not answer within 60 s")

    def create_topic(self, name: str, partitions: int = 4) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
            future.result(timeout=30)

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, kill: bool = True) -> None:
        """Stop the broker (killed, by default) and bring it back with its data."""
        self.stop(kill=kill)
        self.run()


def start(folder: Path) -> Kafka:
    """A fresh broker with its data in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    kafka = Kafka(folder, _free_port(), _free_port())
    kafka.format()
    kafka.run()
    return kafka

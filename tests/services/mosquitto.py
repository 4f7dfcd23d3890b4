"""Mosquitto (Debian's package) on a free loopback port, with persistence.

`make setup` installs it (apt-get, as root). `start` writes a configuration that keeps
sessions and queued messages on disk, lets a client hold any number of unacknowledged QoS 1
messages (the stream acknowledges after each commit), and waits until the broker answers;
`restart` stops it cleanly (it saves its state) and brings it back on the same port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise RuntimeError(
            "mosquitto is not installed: run `make setup` (apt-get install mosquitto)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mosquitto:
    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self) -> None:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.folder / "mosquitto.conf"
        config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {data}/",
                    "autosave_interval 1",
                    # unacknowledged messages a client may hold: the stream acknowledges after
                    # each commit, so this bounds a batch (and what comes again after a crash)
                    "max_inflight_messages 10000",
                    "max_queued_messages 0",
                    "max_queued_bytes 0",
                    "persistent_client_expiration 1h",
                    f"log_dest file {self.folder / 'mosquitto.log'}",
                    # as root it would switch to the `mosquitto` user, which cannot write
                    # the test's private temporary folder (its persistence would be lost)
                    *(["user root"] if os.geteuid() == 0 else []),
                ]
            )
            + "\n"
        )
        self.process = subprocess.Popen(
            [binary(), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("mosquitto did not answer within 20 s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()  # it saves sessions and queued messages on the way out
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.run()


def start(folder: Path) -> Mosquitto:
    folder.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(folder, _free_port())
    broker.run()
    return broker

"""Azurite (Microsoft's Azure Storage emulator, from npm) on a free loopback port.

`make setup` installs it into `.cache/azurite/` (npm, once); `start` runs its blob service
with its data in a temporary folder and waits until it answers. The account is Azurite's
well-known development account; its key is public and documented by Microsoft.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass
class Azurite:
    """A running emulator: its port, process and the environment that reaches it."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The standard variables delta-rs, obstore and the Azure SDKs read."""
        return {
            "AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT,
            "AZURE_STORAGE_ACCOUNT_KEY": KEY,
            "AZURE_STORAGE_USE_EMULATOR": "true",
            "AZURITE_BLOB_STORAGE_URL": self.url,
        }

    def create_container(self, name: str) -> None:
        from azure.storage.blob import BlobServiceClient

        connection = (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.url}/{ACCOUNT};"
        )
        BlobServiceClient.from_connection_string(connection).create_container(name)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(data: Path) -> Azurite:
    """Start the blob service; raise with what to run when it is not installed."""
    if not BINARY.exists():
        raise RuntimeError(f"Azurite is not installed at {BINARY}: run `make setup` (needs npm)")
    port = _free_port()
    process = subprocess.Popen(
        [str(BINARY), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
         str(data), "--silent", "--skipApiVersionCheck", "--loose"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return Azurite(port, process)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("Azurite did not answer within 30 s")


@contextmanager
def emulated(data: Path) -> Iterator[Azurite]:
    """A running emulator whose variables this process holds too (it uploads and reads back
    through them); both undone on exit."""
    service = start(data)
    saved = {k: os.environ.get(k) for k in service.env}
    os.environ.update(service.env)
    try:
        yield service
    finally:
        service.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

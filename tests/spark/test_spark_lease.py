"""The Spark engine takes the same commit lease on a container as the embedded engine.

Spark itself cannot write to Azurite here (no hadoop-azure jars in the project's setup), so
this checks the lease, not a Spark commit: a Spark lakehouse object on an `az://` root
holds the lease that an embedded writer on the same root waits for, and a store it cannot
write to is one clear error before any work.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from digital_finance import Lakehouse
from digital_finance.lakehouse.commit_lock import LeaseUnreachableError, ObjectStoreLock
from tests.conftest import cli_process
from tests.services import azurite

pytestmark = [pytest.mark.spark, pytest.mark.azure, pytest.mark.slow]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[azurite.Azurite]:
    with azurite.emulated(tmp_path_factory.mktemp("azurite-lease")) as service:
        yield service


def test_a_spark_writer_holds_the_lease_an_embedded_writer_waits_for(
    spark: Any, emulator: azurite.Azurite, generated: Path
) -> None:
    container = f"lake{uuid.uuid4().hex[:10]}"
    emulator.create_container(container)
    uri = f"az://{container}/lakehouse"
    lock = Lakehouse(uri, engine="spark", spark=spark)._batch_runner().lock
    assert isinstance(lock, ObjectStoreLock)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock.hold("spark-run", lambda m: None):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(30)
    started = time.monotonic()
    threading.Timer(4, release.set).start()
    done = cli_process("run", "--stocks", str(generated / "stocks"), "--output", uri,
                       env=emulator.env)  # fmt: skip
    holder.join(30)
    assert done.returncode == 0, done.stderr
    assert "waiting for another writer" in done.stderr and "spark-run" in done.stderr
    assert time.monotonic() - started >= 4  # it committed only after the Spark side let go


def test_a_store_the_lease_cannot_be_written_to_is_one_clear_error(
    spark: Any, emulator: azurite.Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "d3Jvbmc=")  # a key that is not the account's
    lake = Lakehouse(f"az://lake{uuid.uuid4().hex[:8]}/x", engine="spark", spark=spark)
    lock = lake._batch_runner().lock
    with pytest.raises(LeaseUnreachableError, match="cannot be written"), lock.hold("r", print):
        pass

"""The spool: a stream batch's records, kept beside the tables until the batch is done.

A stream batch's records live in the consumer's memory; the broker may not hand them out
again (MQTT never does, Kafka only within its retention), and the next writer to take the
commit lock may be any process — a `run` on files, another `stream`. So before a stream
batch is claimed, its records are written here, under the lakehouse, as one Parquet file
named by the SHA-256 of its bytes; the batch's plan rows carry that name. Whoever finds the
batch unfinished reads the records back from the spool and finishes it exactly as planned.
When the batch is logged done its spool file is removed; a writer holding the lock removes
any spool file no unfinished batch needs (one left by a writer killed in between).

Local spool files are written to a temporary name, fsynced and renamed, so a file under its
final name is whole; on an object store a PUT is atomic.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

from digital_finance.lakehouse.storage import Location

if TYPE_CHECKING:
    import pyarrow as pa

FOLDER = "_system/spool"
SUFFIX = ".parquet"


def _relative(sha256: str) -> str:
    return f"{FOLDER}/{sha256}{SUFFIX}"


def encode(table: pa.Table) -> bytes:
    """`table` as the bytes of a spool file."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def write(root: Location, sha: str, data: bytes) -> None:
    """Keep a spool file (`encode`) durably under the lakehouse."""
    if root.is_local:
        folder = root.path / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{sha}{SUFFIX}"
        temp = folder / f".{sha}.{os.getpid()}.tmp"
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
        _fsync_folder(folder)
    else:
        import obstore

        obstore.put(root.store(), _relative(sha), data)


def read(root: Location, sha256: str) -> pa.Table:
    """The records kept under `sha256`; `FileNotFoundError` when they are gone."""
    import pyarrow.parquet as pq

    if root.is_local:
        return pq.read_table(root.path / _relative(sha256))
    import obstore
    from obstore.exceptions import NotFoundError

    try:
        data = bytes(obstore.get(root.store(), _relative(sha256)).bytes())
    except (NotFoundError, FileNotFoundError) as exc:  # obstore raises the built-in one
        raise FileNotFoundError(_relative(sha256)) from exc
    return pq.read_table(io.BytesIO(data))


def exists(root: Location, sha256: str) -> bool:
    """Whether the spool holds `sha256`."""
    if root.is_local:
        return (root.path / _relative(sha256)).is_file()
    import obstore
    from obstore.exceptions import NotFoundError

    try:
        obstore.head(root.store(), _relative(sha256))
    except (NotFoundError, FileNotFoundError):  # obstore raises the built-in one
        return False
    return True


def names(root: Location) -> set[str]:
    """The spool files there are, by name."""
    if root.is_local:
        folder = root.path / FOLDER
        if not folder.is_dir():
            return set()
        return {p.name.removesuffix(SUFFIX) for p in folder.glob(f"*{SUFFIX}")}
    import obstore

    found = set()
    for page in obstore.list(root.store(), prefix=FOLDER + "/"):
        for meta in page:
            name = str(meta["path"]).rsplit("/", 1)[-1]
            if name.endswith(SUFFIX):
                found.add(name.removesuffix(SUFFIX))
    return found


def remove(root: Location, sha256: str) -> None:
    """Let go of the records kept under `sha256` (no error when they are gone already)."""
    if root.is_local:
        with contextlib.suppress(FileNotFoundError):
            (root.path / _relative(sha256)).unlink()
        return
    import obstore

    with contextlib.suppress(FileNotFoundError):
        obstore.delete(root.store(), _relative(sha256))


def sweep(root: Location, needed: AbstractSet[str]) -> int:
    """Remove every spool file but those `needed`; how many went. Only under the lock: a
    spool file is written by the lock's holder just before it claims its batch."""
    gone = 0
    for name in names(root) - set(needed):
        remove(root, name)
        gone += 1
    if root.is_local:
        for temp in (root.path / FOLDER).glob(".*.tmp") if (root.path / FOLDER).is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    return gone


def _fsync_folder(folder: os.PathLike[str]) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

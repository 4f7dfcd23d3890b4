"""Delta deletion vectors: read them into DuckDB, and write them for silver's marked rows.

A deletion vector marks rows of a Parquet file as deleted without rewriting the file
(merge-on-read). The format is Delta's (PROTOCOL.md, "Deletion Vector Format"): a file
`deletion_vector_<uuid>.bin` at the table's root holds, after a version byte, one or more
vectors, each a big-endian size, a 64-bit RoaringBitmapArray (magic 1681511377, the count
of 32-bit bitmaps, each a key and a portable roaring bitmap) and a big-endian CRC-32. The
log's `add` names its vector by the uuid in Z85 (`storageType` "u"), the offset and size.
Spark writes and reads them; delta-rs 1.6 reads them (`deletion_vectors()`, its query
engine) but writes none and its Arrow dataset refuses the tables, hence this module.

The add that carries a vector is known to the log by its path *and* its vector, so a
commit that replaces a file's vector must remove the add with the vector it had: delta-rs
does not expose it, so `current_vectors` replays the log's checkpoint and commits (few for
silver's files).
"""

from __future__ import annotations

import json
import struct
import threading
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
from deltalake import DeltaTable

FEATURE = "deletionVectors"
ENABLE_PROPERTY = "delta.enableDeletionVectors"
_MAGIC = 1681511377
_FORMAT_VERSION = 1
_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
# what a writer at protocol (1, 2) implies; Delta lists them once the table names features
_LEGACY_WRITER_FEATURES = ["appendOnly", "invariants"]


def has_vectors(dt: DeltaTable) -> bool:
    """Whether the table's protocol lets its files carry deletion vectors."""
    return FEATURE in (dt.protocol().reader_features or [])


def can_enable(dt: DeltaTable) -> bool:
    """Whether the table can take the feature by the one upgrade this module writes: from
    the plain protocol (1, 2) that delta-rs and DuckDB's files give, unpartitioned."""
    protocol = dt.protocol()
    return (
        protocol.min_reader_version == 1
        and protocol.min_writer_version <= 2
        and not dt.metadata().partition_columns
    )


def enabling_actions(dt: DeltaTable) -> list[dict[str, Any]]:
    """The protocol and metadata actions that give the table deletion vectors."""
    meta = dt.metadata()
    configuration = {**meta.configuration, ENABLE_PROPERTY: "true"}
    metadata = {
        "id": meta.id,
        "name": meta.name,
        "description": meta.description,
        "format": {"provider": "parquet", "options": {}},
        "schemaString": dt.schema().to_json(),
        "partitionColumns": list(meta.partition_columns),
        "createdTime": meta.created_time,
        "configuration": configuration,
    }
    protocol = {
        "minReaderVersion": 3,
        "minWriterVersion": 7,
        "readerFeatures": [FEATURE],
        "writerFeatures": [*_LEGACY_WRITER_FEATURES, FEATURE],
    }
    return [{"protocol": protocol}, {"metaData": metadata}]


_deleted_at: OrderedDict[tuple[str, int], pa.Table] = OrderedDict()
_deleted_lock = threading.Lock()
_DELETED_KEPT = 16


def deleted_rows(dt: DeltaTable) -> pa.Table:
    """Every deleted row of the table's current files as (`filename`, `file_row_number`),
    the file as a local path the way DuckDB's reader names it.

    Kept per table version: a batch reads silver and gold's vectors five or six times
    (the marks, gold's scans), and delta-rs expands each file's vector to a flag per row.
    """
    key = (dt.table_uri, dt.version())
    with _deleted_lock:
        found = _deleted_at.get(key)
        if found is not None:
            _deleted_at.move_to_end(key)
            return found
    found = _read_deleted(dt)
    with _deleted_lock:
        _deleted_at[key] = found
        while len(_deleted_at) > _DELETED_KEPT:
            _deleted_at.popitem(last=False)
    return found


def _read_deleted(dt: DeltaTable) -> pa.Table:
    found = _decoded(dt) if is_local(dt) else None
    return found if found is not None else _expanded(dt)


def _decoded(dt: DeltaTable) -> pa.Table | None:
    """The deleted rows read from the vectors themselves: a cost that follows the deleted
    rows, where delta-rs's `deletion_vectors` expands every file to a flag per row (5 to 8 ms
    a version at 770k rows, ten times that at 7.7M). None where a vector is not one this
    reads (inline, or a bitmap past 2^32 rows): delta-rs reads those."""
    folder = Path(local_path(dt.table_uri))
    names: list[pa.Array] = []
    rows: list[pa.Array] = []
    for path, vector in sorted(current_vectors(folder, dt.version()).items()):
        positions = _positions(folder, vector)
        if positions is None:
            return None
        if len(positions):
            values = positions.to_array()  # uint32, in order
            flat = pa.Array.from_buffers(pa.uint32(), len(values), [None, pa.py_buffer(values)])
            rows.append(flat.cast(pa.int64()))
            where = str(folder / unquote(path))
            names.append(pa.repeat(pa.scalar(where, pa.string()), len(values)))
    return _deleted_table(names, rows)


def _positions(folder: Path, vector: Mapping[str, Any]) -> Any:
    """The row positions of one stored vector (a `pyroaring.BitMap`), or None."""
    from pyroaring import BitMap

    where = stored_in(vector)
    if where is None:
        return None
    with (folder / where).open("rb") as stored:
        stored.seek(int(vector["offset"]))
        (size,) = struct.unpack(">i", stored.read(4))
        body = stored.read(size)
    magic, buckets = struct.unpack_from("<iq", body)
    if magic != _MAGIC or buckets > 1:
        return None
    if buckets == 0:
        positions = BitMap()
    elif struct.unpack_from("<I", body, 12)[0] != 0:
        return None
    else:
        positions = BitMap.deserialize(body[16:])
    return positions if len(positions) == int(vector["cardinality"]) else None


def _deleted_table(names: list[pa.Array], rows: list[pa.Array]) -> pa.Table:
    if not rows:
        return pa.table({"filename": pa.array([], pa.string()),
                         "file_row_number": pa.array([], pa.int64())})  # fmt: skip
    return pa.table(
        {
            "filename": pa.chunked_array(names, pa.string()),
            "file_row_number": pa.chunked_array(rows, pa.int64()),
        }
    )


def _expanded(dt: DeltaTable) -> pa.Table:
    """The deleted rows by delta-rs, which expands each file's vector to a flag per row."""
    import pyarrow.compute as pc

    names: list[pa.Array] = []
    rows: list[pa.Array] = []
    # through the stream interface: `pa.table` of a foreign table imports pandas (0.4 s), and
    # so does `to_numpy` of a flag array: positions by pyarrow's compute functions instead
    vectors = pa.RecordBatchReader.from_stream(dt.deletion_vectors()).read_all()
    for uri, kept in zip(
        vectors.column("filepath").to_pylist(), vectors.column("selection_vector"), strict=True
    ):
        gone = pc.indices_nonzero(pc.invert(kept.values))
        if len(gone):
            rows.append(pc.cast(gone, pa.int64()))
            names.append(pa.repeat(pa.scalar(local_path(str(uri)), pa.string()), len(gone)))
    return _deleted_table(names, rows)


def deleted_count(dt: DeltaTable) -> int:
    """How many rows of the table's current files are marked deleted."""
    return int(deleted_rows(dt).num_rows)


def is_local(dt: DeltaTable) -> bool:
    """Whether the table is in a local folder (its files and vectors open as paths)."""
    return "://" not in dt.table_uri or dt.table_uri.startswith("file://")


def local_path(uri: str) -> str:
    """A `file://` URI of delta-rs as the plain path DuckDB opens."""
    return unquote(uri.removeprefix("file://"))


def encode(positions: Iterable[Iterable[int]]) -> tuple[bytes, list[tuple[int, int]]]:
    """One deletion-vector file holding a vector per list of row positions: (its bytes,
    each vector's (offset, size) in it)."""
    from pyroaring import BitMap

    out = bytearray([_FORMAT_VERSION])
    placed = []
    for rows in positions:
        bitmaps: dict[int, list[int]] = {}
        for row in sorted(rows):
            bitmaps.setdefault(row >> 32, []).append(row & 0xFFFFFFFF)
        body = struct.pack("<iq", _MAGIC, len(bitmaps)) + b"".join(
            struct.pack("<I", key) + BitMap(values).serialize()
            for key, values in sorted(bitmaps.items())
        )
        placed.append((len(out), len(body)))
        out += struct.pack(">i", len(body)) + body + struct.pack(">I", zlib.crc32(body))
    return bytes(out), placed


def file_name(vector_id: uuid.UUID) -> str:
    """The file a "u" vector with no prefix lives in, relative to the table's root."""
    return f"deletion_vector_{vector_id}.bin"


def descriptor(vector_id: uuid.UUID, offset: int, size: int, cardinality: int) -> dict[str, Any]:
    """The log's `deletionVector` for a vector stored in `file_name(vector_id)`."""
    return {
        "storageType": "u",
        "pathOrInlineDv": _z85(vector_id.bytes),
        "offset": offset,
        "sizeInBytes": size,
        "cardinality": cardinality,
    }


def stored_in(vector: Mapping[str, Any]) -> str | None:
    """The file (relative to the table) that a "u" vector lives in; None for the others."""
    if vector.get("storageType") != "u":
        return None
    text = str(vector["pathOrInlineDv"])
    prefix, encoded = text[:-20], text[-20:]
    vector_id = uuid.UUID(bytes=_z85_decode(encoded))
    return f"{prefix}/{file_name(vector_id)}" if prefix else file_name(vector_id)


def _z85_decode(text: str) -> bytes:
    out = bytearray()
    for i in range(0, len(text), 5):
        value = 0
        for char in text[i : i + 5]:
            value = value * 85 + _Z85.index(char)
        out += value.to_bytes(4, "big")
    return bytes(out)


def _z85(data: bytes) -> str:
    chars: list[str] = []
    for i in range(0, len(data), 4):
        value = int.from_bytes(data[i : i + 4], "big")
        chunk: list[str] = []
        for _ in range(5):
            value, digit = divmod(value, 85)
            chunk.append(_Z85[digit])
        chars.extend(reversed(chunk))
    return "".join(chars)


class _Replayed:
    """A table's live adds' vectors at a version, brought forward commit by commit."""

    def __init__(self) -> None:
        self.version = -1
        self.vectors: dict[str, dict[str, Any]] = {}


_replayed: dict[str, _Replayed] = {}
_replayed_lock = threading.Lock()


def current_vectors(table: Path, version: int) -> dict[str, dict[str, Any]]:
    """The deletion vector of every live add that has one, by the add's path, at
    `version` of the local table at `table` (its checkpoint and the commits after it)."""
    log = table / "_delta_log"
    with _replayed_lock:
        state = _replayed.setdefault(str(table), _Replayed())
        if state.version > version:
            state.__init__()  # type: ignore[misc]  # the table was made again
        start = state.version + 1
        if state.version < 0:
            checkpoint = _last_checkpoint(log)
            if checkpoint is not None and checkpoint <= version:
                state.vectors = _checkpoint_vectors(log, checkpoint)
                start = checkpoint + 1
        for v in range(start, version + 1):
            with (log / f"{v:020d}.json").open(encoding="utf-8") as commit:
                actions = [json.loads(line) for line in commit]
            # a commit's actions hold at once: a file's old vector is removed and its new
            # one added in the same commit, in either order (Spark writes the add first)
            for action in actions:
                if "remove" in action:
                    state.vectors.pop(unquote(action["remove"]["path"]), None)
            for action in actions:
                if "add" in action:
                    add = action["add"]
                    if add.get("deletionVector"):
                        state.vectors[unquote(add["path"])] = add["deletionVector"]
                    else:
                        state.vectors.pop(unquote(add["path"]), None)
        state.version = version
        return dict(state.vectors)


def _last_checkpoint(log: Path) -> int | None:
    try:
        pointer = json.loads((log / "_last_checkpoint").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return int(pointer["version"])


def _checkpoint_vectors(log: Path, version: int) -> dict[str, dict[str, Any]]:
    import pyarrow.parquet as pq

    parts = sorted(log.glob(f"{version:020d}.checkpoint*.parquet"))
    if not parts:
        raise FileNotFoundError(f"the checkpoint of version {version} is not in {log}")
    found: dict[str, dict[str, Any]] = {}
    for part in parts:
        for add in pq.read_table(part, columns=["add"]).column("add").to_pylist():
            if add is not None and add.get("deletionVector"):
                found[unquote(add["path"])] = add["deletionVector"]
    return found

"""Delta's deletion-vector format, as `deletion_vectors` writes it."""

from __future__ import annotations

import struct
import uuid
import zlib

from pyroaring import BitMap

from digital_finance.engines.embedded import deletion_vectors


def test_a_vector_id_is_named_as_spark_names_it() -> None:
    # a vector Delta Spark 4.4 wrote: its file's uuid and the log's `pathOrInlineDv`
    vector_id = uuid.UUID("bffff0c2-d78a-4666-aefa-781d1560d38a")
    described = deletion_vectors.descriptor(vector_id, 1, 15124, 10000)
    assert described["pathOrInlineDv"] == "ZYi/u/nr4fUkiw-6>2HF"
    assert described["storageType"] == "u"
    assert deletion_vectors.file_name(vector_id) == f"deletion_vector_{vector_id}.bin"


def _read(data: bytes, offset: int, size: int) -> list[int]:
    """Decode one vector by the protocol's layout (not by the module under test)."""
    (stored,) = struct.unpack(">i", data[offset : offset + 4])
    assert stored == size
    body = data[offset + 4 : offset + 4 + size]
    (crc,) = struct.unpack(">I", data[offset + 4 + size : offset + 8 + size])
    assert crc == zlib.crc32(body)
    magic, count = struct.unpack("<iq", body[:12])
    assert magic == 1681511377
    rows, at = [], 12
    for _ in range(count):
        (key,) = struct.unpack("<I", body[at : at + 4])
        bitmap = BitMap.deserialize(body[at + 4 :])
        rows += [(key << 32) | v for v in bitmap]
        at += 4 + len(bitmap.serialize())
    return rows


def test_vectors_round_trip_through_the_file_layout() -> None:
    vectors = [[5, 3, 70_000], list(range(0, 200_000, 3)), [7, (1 << 32) + 2]]
    data, placed = deletion_vectors.encode(vectors)
    assert data[0] == 1  # the format's version byte
    assert placed[0][0] == 1
    for rows, (offset, size) in zip(vectors, placed, strict=True):
        assert _read(data, offset, size) == sorted(rows)
    # each vector follows the last one's checksum
    assert placed[1][0] == placed[0][0] + 4 + placed[0][1] + 4
    assert len(data) == placed[-1][0] + 4 + placed[-1][1] + 4


def test_a_descriptor_names_its_file() -> None:
    vector_id = uuid.uuid4()
    described = deletion_vectors.descriptor(vector_id, 1, 10, 2)
    assert deletion_vectors.stored_in(described) == deletion_vectors.file_name(vector_id)
    prefixed = {**described, "pathOrInlineDv": "ab" + described["pathOrInlineDv"]}
    assert deletion_vectors.stored_in(prefixed) == f"ab/{deletion_vectors.file_name(vector_id)}"
    assert deletion_vectors.stored_in({"storageType": "i", "pathOrInlineDv": "x"}) is None

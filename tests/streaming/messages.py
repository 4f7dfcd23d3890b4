"""Generated data as stream messages, and the same messages as files for `run`.

The generator's NDJSON files (plain and gzip) are split into their lines, byte for byte:
each non-blank line is one message. Messages are keyed by the record's dataset key, as a
producer of these events would key them, so every version of a key lands in one partition
in the order of the files; records without a readable key get none (any partition).
The same messages written one per line into one file per dataset are what `run` is given
for the comparison.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

KEYS = {"stocks": ("stock_id",), "mutual_funds": ("fund_id", "company_id")}


@dataclass(frozen=True)
class Msg:
    dataset: str
    key: bytes | None
    value: bytes


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return [line.rstrip(b"\r") for line in data.split(b"\n") if line.strip()]


def _key(dataset: str, value: bytes) -> bytes | None:
    try:
        record = json.loads(value)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    parts = [record.get(k) for k in KEYS[dataset]]
    if any(p is None or isinstance(p, (dict, list)) for p in parts):
        return None
    return "|".join(str(p).strip() for p in parts).encode()


def messages(generated: Path) -> list[Msg]:
    """Every NDJSON line of the generated data (JSON-array files left out), in file order."""
    out: list[Msg] = []
    for dataset in ("stocks", "mutual_funds"):
        for path in sorted((generated / dataset).iterdir()):
            if path.name.endswith(".json"):
                continue  # an array file is one document, not a line per record
            for line in _lines(path):
                out.append(Msg(dataset, _key(dataset, line), line))
    return out


def as_files(msgs: list[Msg], folder: Path) -> dict[str, Path]:
    """The messages one per line, a file per dataset: what `run` reads for the comparison."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for dataset in ("stocks", "mutual_funds"):
        path = folder / f"{dataset}.ndjson"
        path.write_bytes(b"".join(m.value + b"\n" for m in msgs if m.dataset == dataset))
        files[dataset] = path
    return files


def produce(bootstrap: str, msgs: list[Msg], topics: dict[str, str] | None = None) -> None:
    """Send the messages, in order, idempotently (no doubles from the producer's retries)."""
    from confluent_kafka import Producer

    topics = topics or {"stocks": "stocks", "mutual_funds": "mutual_funds"}
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
         "log_level": 0}
    )  # fmt: skip
    for i, m in enumerate(msgs):
        while True:
            try:
                producer.produce(topics[m.dataset], key=m.key, value=m.value)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 5000 == 0:
            producer.poll(0)
    left = producer.flush(60)
    assert left == 0, f"{left} messages not delivered"

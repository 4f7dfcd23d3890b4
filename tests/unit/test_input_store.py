"""The input store: URIs split, globs matched, ranged object reads equal to file reads.

Objects live in obstore's in-memory store here (a fake for unit speed); the same code
against a real emulator is `tests/e2e/test_azure_inputs.py`.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import pytest
from obstore.store import MemoryStore

from digital_finance.sources import input_store
from digital_finance.sources.discovery import InputError, is_input_name, resolve_inputs
from digital_finance.sources.file_reader import read_chunks
from digital_finance.sources.file_scan import scan_file
from digital_finance.sources.input_store import InputStore, _glob_match, _ObjectStream, split_uri

LINES = b"".join(b'{"stock_id": %d, "symbol": "S%d"}\n' % (i, i) for i in range(1, 2001))


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> MemoryStore:
    store = MemoryStore()
    monkeypatch.setattr(input_store, "_store", lambda root, options: store)
    return store


def test_a_uri_splits_into_the_store_root_and_the_key() -> None:
    assert split_uri("az://landing/stocks/a.json") == ("az://landing", "stocks/a.json")
    assert split_uri("abfss://c@acct.dfs.core.windows.net/x/y.jsonl") == (
        "abfss://c@acct.dfs.core.windows.net",
        "x/y.jsonl",
    )
    with pytest.raises(InputError, match="no container"):
        split_uri("az:///stocks/a.json")


def test_globs_match_one_level_and_double_stars_any() -> None:
    assert _glob_match("stocks/a.json", "stocks/*.json")
    assert not _glob_match("stocks/2024/a.json", "stocks/*.json")
    assert _glob_match("stocks/2024/03/a.json", "stocks/**/*.json")
    assert _glob_match("stocks/part-1.jsonl", "stocks/part-?.jsonl")
    assert not _glob_match("funds/a.json", "stocks/*")
    assert _glob_match("stocks/a.json", "stocks/**/*.json")  # `**/` may be no level at all
    assert _glob_match("a/stocks/x.jsonl", "**/stocks/*.jsonl")
    assert not _glob_match("archive/oldstocks/x.jsonl", "**/stocks/*.jsonl")
    assert not _glob_match("a/stocks/deep/x.jsonl", "**/stocks/*.jsonl")
    assert _glob_match("stocks/part-7.jsonl", "stocks/part-[0-9].jsonl")
    assert not _glob_match("stocks/part-x.jsonl", "stocks/part-[0-9].jsonl")


def test_an_object_rewritten_in_the_same_second_gets_a_new_fingerprint() -> None:
    from datetime import UTC, datetime

    when = datetime(2026, 12, 6, 6, 0, 1, tzinfo=UTC)
    first = input_store._listed("az://c", {"path": "s/a.json", "size": 10, "last_modified": when,
                                           "e_tag": '"0x8DC1"'})  # fmt: skip
    again = input_store._listed("az://c", {"path": "s/a.json", "size": 10, "last_modified": when,
                                           "e_tag": '"0x8DC2"'})  # fmt: skip
    assert first.modified_ns != again.modified_ns
    # still a time within that second: the landing folder's settle rule compares times
    for f in (first, again):
        assert int(when.timestamp()) * 10**9 <= f.modified_ns < (int(when.timestamp()) + 1) * 10**9


def test_input_names_follow_the_folder_rules() -> None:
    assert is_input_name("stocks/a.jsonl.gz")
    assert is_input_name("A.NDJSON")
    assert not is_input_name("stocks/_tmp.json")
    assert not is_input_name("stocks/.part.json")
    assert not is_input_name("stocks/readme.txt")


@pytest.mark.parametrize(("start", "end"), [(0, None), (0, 100), (37, 5000), (100, 100), (9, None)])
@pytest.mark.parametrize("buffer", [1, 7, 4096, 1 << 20])
def test_a_ranged_object_read_gives_exactly_those_bytes(
    memory: MemoryStore, start: int, end: int | None, buffer: int
) -> None:
    memory.put("k/a.jsonl", LINES)
    stream = io.BufferedReader(_ObjectStream(memory, "k/a.jsonl", start, end), buffer_size=buffer)
    got = b""
    while block := stream.read(buffer):
        got += block
    assert got == LINES[start:end]


def test_the_reader_and_the_scan_give_the_same_from_an_object_as_from_a_file(
    memory: MemoryStore, tmp_path: Path
) -> None:
    packed = gzip.compress(LINES)
    memory.put("in/a.jsonl", LINES)
    memory.put("in/b.jsonl.gz", packed)
    (tmp_path / "a.jsonl").write_bytes(LINES)
    (tmp_path / "b.jsonl.gz").write_bytes(packed)
    store = InputStore()

    def records(path: str, start: int = 0, first_line: int = 1) -> list[Any]:
        chunks = read_chunks(path, 4096, start=start, first_line=first_line, store=store)
        return [row for c in chunks for row in c.table.select(["line_number", "raw"]).to_pylist()]

    for name in ("a.jsonl", "b.jsonl.gz"):
        assert records(f"az://mem/in/{name}") == records(str(tmp_path / name))
    cut = LINES.index(b"\n", 1000) + 1
    assert records("az://mem/in/a.jsonl", cut, 30) == records(str(tmp_path / "a.jsonl"), cut, 30)
    remote = scan_file("az://mem/in/a.jsonl", len(LINES), cut, store)
    local = scan_file(str(tmp_path / "a.jsonl"), len(LINES), cut)
    assert remote == local


def test_listing_takes_a_named_object_a_prefix_or_a_glob(memory: MemoryStore) -> None:
    for key in ("s/a.json", "s/b.jsonl.gz", "s/_tmp.json", "s/notes.txt", "s/deep/c.ndjson"):
        memory.put(key, b"{}\n")
    listed = {f.path for f in resolve_inputs(["az://mem/s/"], InputStore())}
    assert listed == {"az://mem/s/a.json", "az://mem/s/b.jsonl.gz", "az://mem/s/deep/c.ndjson"}
    assert [f.path for f in resolve_inputs(["az://mem/s/*.json"])] == ["az://mem/s/a.json"]
    assert [f.path for f in resolve_inputs(["az://mem/s/notes.txt"])] == ["az://mem/s/notes.txt"]
    assert {f.size for f in resolve_inputs(["az://mem/s"])} == {3}
    with pytest.raises(InputError, match="no object matches"):
        resolve_inputs(["az://mem/s/*.parquet"])
    with pytest.raises(InputError, match="names no object"):
        resolve_inputs(["az://mem/elsewhere/"])
    assert InputStore().below("az://mem/elsewhere") == []


def test_store_errors_split_into_refusals_and_blips() -> None:
    from obstore.exceptions import GenericError, PermissionDeniedError

    from digital_finance.lakehouse.storage import refused_by_store

    assert refused_by_store(PermissionDeniedError("no"))
    assert refused_by_store(FileNotFoundError("container"))
    assert refused_by_store(GenericError("returned non-2xx status code: 404 Not Found"))
    assert not refused_by_store(GenericError("returned non-2xx status code: 503 Unavailable"))
    assert not refused_by_store(GenericError("operation timed out"))

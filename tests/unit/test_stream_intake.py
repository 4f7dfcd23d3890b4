"""Planning a stream batch from held records and what the tables hold; reading it back."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import SecretStr

from digital_finance.lakehouse import spool
from digital_finance.lakehouse.storage import Location
from digital_finance.runs.intake import StreamIntake, natural_key
from digital_finance.runs.plan import History, PlannedFile, UnfinishedBatchError, reached_positions
from digital_finance.sources.discovery import InputFile
from digital_finance.sources.input_limits import InputLimits
from digital_finance.sources.stream_records import (
    StreamRecords,
    ordered,
    partition_runs,
    records_table,
)
from digital_finance.streaming.feed import Held
from digital_finance.streaming.kafka_config import KafkaConfigError, connection


def _part(
    batch: int, partition: str, start: int, end: int, sha: str = "s"
) -> tuple[int, PlannedFile]:
    return batch, PlannedFile("stocks", 0, InputFile(partition, end, 0), start, start, sha, "kafka")


def _history(
    *parts: tuple[int, PlannedFile],
    succeeded: set[int] | None = None,
    abandoned: set[int] | None = None,
) -> History:
    done = succeeded if succeeded is not None else {b for b, _ in parts}
    return History(list(parts), done, abandoned or set(), {})


def _held(*rows: tuple[str, int]) -> StreamIntake:
    table = records_table(("stocks", p, pos, b'{"n":%d}' % pos) for p, pos in rows)
    return StreamIntake("kafka", table)


def test_a_partition_goes_on_from_where_the_tables_stand_and_older_records_are_dropped() -> None:
    past = _history(_part(1, "t/0", 0, 10), _part(2, "t/0", 10, 25), _part(2, "t/1", 0, 7))
    plan = _held(("t/0", 20), ("t/0", 25), ("t/0", 26), ("t/1", 7), ("t/2", 3)).plan(
        past, None, lambda s: True
    )
    assert plan.resume is None and plan.new is not None
    assert plan.new.batch_id == 3
    ranges = {pf.partition: (pf.start, pf.end) for pf in plan.new.files}
    # t/0: 20 was taken by batch 2; t/2 is new to the tables and starts at its first record
    assert ranges == {"t/0": (25, 27), "t/1": (7, 8), "t/2": (3, 4)}
    assert isinstance(plan.new.records, StreamRecords)
    assert sorted(plan.new.records.table["position"].to_pylist()) == [3, 7, 25, 26]
    assert {pf.sha256 for pf in plan.new.files} == {plan.new.records.spool_name()}


def test_records_every_batch_holds_already_make_no_batch() -> None:
    past = _history(_part(1, "t/0", 0, 10))
    plan = _held(("t/0", 3), ("t/0", 9)).plan(past, None, lambda s: True)
    assert plan.new is None


def test_an_abandoned_batch_gives_its_positions_back() -> None:
    past = _history(_part(1, "t/0", 0, 10), _part(2, "t/0", 10, 20), abandoned={2}, succeeded={1})
    assert reached_positions(past.planned, past.abandoned) == {("kafka", "t/0"): 10}


def test_an_unfinished_stream_batch_is_resumed_from_the_spool_or_refused_without_it() -> None:
    past = _history(_part(1, "t/0", 0, 10, sha="abc"), succeeded=set())
    plan = _held().plan(past, None, lambda s: s == "abc")
    assert plan.resume is not None and plan.resume.batch_id == 1 and plan.resume.resumed
    with pytest.raises(UnfinishedBatchError, match="spool"):
        _held().plan(past, None, lambda s: False)
    # bronze holds it: finished from there
    assert _held().plan(past, 1, lambda s: False).resume is not None


def test_the_same_records_make_the_same_plan_and_spool_contents_whatever_their_order() -> None:
    a = _held(("t/1", 1), ("t/0", 5), ("t/0", 4)).plan(_history(), None, lambda s: True)
    b = _held(("t/0", 4), ("t/1", 1), ("t/0", 5)).plan(_history(), None, lambda s: True)
    assert a.new is not None and b.new is not None
    assert isinstance(a.new.records, StreamRecords) and isinstance(b.new.records, StreamRecords)
    # the spool file's name is drawn per plan (naming it by its bytes cost a Parquet encoding
    # before the staging could start); what it holds is the same, in one order
    assert [replace(pf, sha256=None) for pf in a.new.files] == [
        replace(pf, sha256=None) for pf in b.new.files
    ]
    assert a.new.records.table.equals(b.new.records.table)
    assert a.new.records.table["position"].to_pylist() == [4, 5, 1]
    assert a.new.records.spool_name() != b.new.records.spool_name()
    assert pq.read_table(io.BytesIO(a.new.records.encoded()[1])).equals(a.new.records.table)


def test_held_records_are_kept_in_partition_order_without_sorting_what_is_in_order() -> None:
    rows = [
        ("stocks", "t/1", 0, b"a"),
        ("mutual_funds", "f/0", 2, b"b"),
        ("stocks", "t/0", 7, b"c"),
    ]
    shuffled = records_table([*rows, ("stocks", "t/0", 3, b"d")])
    in_order = ordered(shuffled)
    assert [(r["partition"], r["position"]) for r in in_order.to_pylist()] == [
        ("f/0", 2),
        ("t/0", 3),
        ("t/0", 7),
        ("t/1", 0),
    ]
    assert ordered(in_order) is in_order  # nothing moved when nothing needs to
    assert [(key, t.num_rows) for key, t in partition_runs(in_order)] == [
        (("mutual_funds", "f/0"), 1),
        (("stocks", "t/0"), 2),
        (("stocks", "t/1"), 1),
    ]
    # a partition in two runs, each in order, is not in order: it is sorted
    split = records_table(
        [("stocks", "t/0", 1, b"a"), ("stocks", "t/1", 1, b"b"), ("stocks", "t/0", 2, b"c")]
    )
    assert [r["partition"] for r in ordered(split).to_pylist()] == ["t/0", "t/0", "t/1"]
    # runs across the chunks of a stitched table are seen as one
    chunked = pa.concat_tables(
        [
            records_table([("stocks", "t/0", 1, b"a")]),
            records_table([("stocks", "t/0", 2, b"b"), ("stocks", "t/1", 0, b"c")]),
        ]
    )
    assert ordered(chunked) is chunked
    assert [(key, t.num_rows) for key, t in partition_runs(chunked)] == [
        (("stocks", "t/0"), 2),
        (("stocks", "t/1"), 1),
    ]
    backwards = pa.concat_tables(
        [records_table([("stocks", "t/0", 5, b"a")]), records_table([("stocks", "t/0", 4, b"b")])]
    )
    assert [r["position"] for r in ordered(backwards).to_pylist()] == [4, 5]
    held = Held()
    held.add(records_table([("stocks", "t/1", 5, b"x"), ("stocks", "t/0", 1, b"y")]))
    held.add(records_table([("stocks", "t/0", 2, b"z"), ("stocks", "t/1", 6, b"w")]))
    assert [(r["partition"], r["position"]) for r in held.table().to_pylist()] == [
        ("t/0", 1),
        ("t/0", 2),
        ("t/1", 5),
        ("t/1", 6),
    ]
    # a partition read again from an earlier position (assigned anew) still comes out in order
    held.add(records_table([("stocks", "t/0", 0, b"v")]))
    assert [r["position"] for r in held.table().to_pylist()][:3] == [0, 1, 2]


def test_records_read_back_one_message_one_record(tmp_path: Path) -> None:
    values = [b'{"a": 1}', b"", b"   ", b'{"pretty":\n  true}', b"\xff\xfe", b"x" * 50]
    table = records_table(("stocks", "t/0", i, v) for i, v in enumerate(values))
    held = StreamRecords(table, "kafka", InputLimits(max_record_bytes=40))
    part = PlannedFile("stocks", 0, InputFile("t/0", 6, 0), 0, 0, None, "kafka")
    chunks = list(held.read(part))
    got = [r for c in chunks for r in c.table.to_pylist()]
    assert [r["line_number"] for r in got] == [0, 3, 4, 5]  # the blank messages dropped
    assert got[1]["raw"] == '{"pretty":\n  true}' and got[1]["line_reason"] is None
    assert got[2]["line_reason"] == "invalid_utf8" and got[2]["raw"] == "\\xff\\xfe"
    assert got[3]["line_reason"] == "record_too_large"
    # the spool keeps exactly these records, under the name the plan gave them
    root = Location.parse(tmp_path / "lake")
    name, data = held.encoded()
    spool.write(root, name, data)
    assert spool.exists(root, name)
    assert spool.read(root, name).equals(table)
    assert spool.sweep(root, {name}) == 0
    assert spool.sweep(root, set()) == 1 and not spool.exists(root, name)


def test_held_messages_of_a_revoked_partition_are_dropped() -> None:
    held = Held()
    held.add(records_table([("stocks", "t/0", 1, b"{}"), ("stocks", "t/1", 4, b"{}")]))
    held.add(records_table([("stocks", "t/0", 2, b"{}")]))
    held.add(records_table([]))
    assert held.ends() == {"t/0": 3, "t/1": 5} and len(held) == 3
    assert held.drop({"t/0"}) == 2 and len(held) == 1
    assert held.table().to_pylist() == [
        {"dataset": "stocks", "partition": "t/1", "position": 4, "value": b"{}"}
    ]


def test_natural_partition_order() -> None:
    assert sorted(["t/10", "t/9", "t/1"], key=natural_key) == ["t/1", "t/9", "t/10"]


def test_event_hubs_connection_string_becomes_sasl_plain_and_is_never_shown() -> None:
    secret = "Endpoint=sb://acme-events.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=CANARY123"
    conn = connection(None, {}, SecretStr(secret))
    conf = conn.librdkafka()
    assert conf["bootstrap.servers"] == "acme-events.servicebus.windows.net:9093"
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanisms"] == "PLAIN"
    assert conf["sasl.username"] == "$ConnectionString" and conf["sasl.password"] == secret
    assert "CANARY123" not in conn.describe() and "CANARY123" not in repr(conn)
    with pytest.raises(KafkaConfigError, match="Endpoint"):
        connection(None, {}, SecretStr("SharedAccessKey=x"))


def test_entra_id_uses_oauthbearer_with_the_namespace_scope() -> None:
    conn = connection("acme-events.servicebus.windows.net:9093", {}, None, entra_id=True)
    conf = conn.librdkafka()
    assert conf["sasl.mechanisms"] == "OAUTHBEARER" and callable(conf["oauth_cb"])
    assert conn.entra_scope == "https://acme-events.servicebus.windows.net/.default"
    with pytest.raises(KafkaConfigError, match="bootstrap_servers"):
        connection(None, {}, None, entra_id=True)
    with pytest.raises(KafkaConfigError, match="no Kafka broker"):
        connection(None, {}, None)


def test_secret_librdkafka_options_are_kept_apart() -> None:
    conn = connection("b:9092", {"sasl.password": "plain-but-secret", "client.rack": "r1"})
    assert "plain-but-secret" not in conn.describe() and "client.rack=r1" in conn.describe()
    assert conn.librdkafka()["sasl.password"] == "plain-but-secret"


def test_messages_are_judged_as_columns_as_they_are_one_by_one() -> None:
    import numpy as np

    from digital_finance.arrow_arrays import large_binaries
    from digital_finance.sources.stream_records import _judged_one_by_one, message_chunk

    values = [b'{"a": 1}', b"", b" \t\r\n\x0b\x0c", "\u00a0".encode(), b'{"p":\n true}', b"\x1c"]
    positions = list(range(10, 10 + len(values)))
    limits = InputLimits()
    whole = message_chunk(np.array(positions), large_binaries(values), limits)
    one_by_one = _judged_one_by_one(positions, values, limits)
    assert whole is not None and one_by_one is not None
    assert whole.table.to_pylist() == one_by_one.table.to_pylist()
    # only the empty and ASCII-whitespace messages are dropped, as bytes.isspace() says
    assert [r["line_number"] for r in whole.table.to_pylist()] == [10, 13, 14, 15]
    assert message_chunk(np.array([1]), large_binaries([b"  "]), limits) is None
    # Spark's workers hand their messages over as `binary`, not `large_binary`
    spark_kind = large_binaries(values).cast(pa.binary())
    from_spark = message_chunk(np.array(positions), spark_kind, limits)
    assert from_spark is not None and from_spark.table.equals(whole.table)

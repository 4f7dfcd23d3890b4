"""Compaction in bounded steps (`engines.embedded.compaction`), on real Delta tables.

A step takes the oldest small files up to its budget, its rewrite holds exactly their rows
(a column added later, zoned times and decimals included), and its swap gives way, changing
nothing, when a writer replaced a planned file between the rewrite and the commit.
"""

from __future__ import annotations

import datetime as dt_
import decimal
import time
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from digital_finance.engines.embedded import compaction
from digital_finance.lakehouse.maintenance import MaintenancePolicy
from digital_finance.lakehouse.storage import location

UTC = dt_.UTC


def _piece(start: int, rows: int, with_note: bool) -> pa.Table:
    columns = {
        "id": pa.array(range(start, start + rows), pa.int64()),
        "price": pa.array(
            [decimal.Decimal(f"{i}.{i % 100:02d}") for i in range(start, start + rows)],
            pa.decimal128(18, 2),
        ),
        "at": pa.array(
            [dt_.datetime(2026, 1, 1, tzinfo=UTC) + dt_.timedelta(seconds=i) for i in range(rows)],
            pa.timestamp("us", tz="UTC"),
        ),
    }
    if with_note:
        columns["note"] = pa.array([f"n{i}" for i in range(rows)], pa.string())
    return pa.table(columns)


def _table(tmp_path: Path, pieces: int, rows: int = 50) -> Path:
    """A table of `pieces` small appends; the later half has a column the first lacks."""
    where = tmp_path / "t"
    for n in range(pieces):
        write_deltalake(
            str(where), _piece(n * rows, rows, n >= pieces // 2), mode="append",
            schema_mode="merge",
        )  # fmt: skip
        time.sleep(0.002)  # distinct modification times: the order a step takes them in
    return where


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by("id")


def test_a_step_takes_the_oldest_small_files_up_to_its_budget(tmp_path: Path) -> None:
    where = _table(tmp_path, 8)
    dt = DeltaTable(str(where))
    actions = pa.table(dt.get_add_actions(flatten=True)).sort_by("modification_time")
    sizes = actions.column("size_bytes").to_pylist()
    budget = sum(sizes[:3])
    step = compaction.plan(dt, "t", small_bytes=10**9, min_files=4, budget_bytes=budget)
    assert step is not None
    assert [p for p, _ in step.files] == actions.column("path").to_pylist()[:3]
    # too few small files: nothing to do
    assert compaction.plan(dt, "t", small_bytes=10**9, min_files=9, budget_bytes=budget) is None
    # a file at or over the small size is never taken
    assert compaction.plan(dt, "t", small_bytes=1, min_files=2, budget_bytes=budget) is None


def test_steps_keep_every_row_and_the_schema(tmp_path: Path) -> None:
    where = _table(tmp_path, 10)
    before = DeltaTable(str(where))
    rows, schema, version = before.to_pyarrow_table(), before.schema().to_arrow(), before.version()
    sizes = sorted(compaction.table_files(before))
    budget = sum(sizes[:4])  # several steps, not one
    policy = MaintenancePolicy(small_file_bytes=10**9, min_small_files=2, target_file_bytes=budget)
    root = location(str(tmp_path))
    steps = 0
    while True:
        dt = DeltaTable(str(where))
        step = compaction.plan(dt, "t", policy.small_file_bytes, 2, budget)
        if step is None:
            break
        with compaction.rewriting(root, step, dt) as done:
            assert done.rows == sum(compaction._records(dt)[p] for p, _ in step.files)
            assert compaction.swap(root, done, DeltaTable(str(where)))
        steps += 1
    after = DeltaTable(str(where))
    assert steps >= 3 and len(after.file_uris()) < 10
    assert _sorted(after.to_pyarrow_table()).equals(_sorted(rows))
    assert pa.schema(after.schema().to_arrow()) == pa.schema(schema)
    assert DeltaTable(str(where), version=version).to_pyarrow_table().num_rows == rows.num_rows
    last = after.history(1)[0]
    assert all(a["dataChange"] is False for a in _actions(where, after.version()))
    assert "digital_finance.maintenance" in last
    assert not list((tmp_path / "_staging").glob("compact-*"))  # scratch removed


def test_a_swap_gives_way_to_a_writer_that_replaced_a_planned_file(tmp_path: Path) -> None:
    where = _table(tmp_path, 6)
    root = location(str(tmp_path))
    dt = DeltaTable(str(where))
    step = compaction.plan(dt, "t", small_bytes=10**9, min_files=2, budget_bytes=10**9)
    assert step is not None and len(step.files) == 6
    with compaction.rewriting(root, step, dt) as done:
        writer = DeltaTable(str(where))
        writer.delete("id = 7")  # a writer rewrites the file holding id 7 meanwhile
        expected = DeltaTable(str(where))
        version, rows = expected.version(), expected.to_pyarrow_table()
        assert not compaction.swap(root, done, DeltaTable(str(where)))
        staged_name = done.staged.name
    now = DeltaTable(str(where))
    assert now.version() == version
    assert _sorted(now.to_pyarrow_table()).equals(_sorted(rows))
    assert not (where / staged_name).exists()  # the rewritten file never reached the table
    assert 7 not in now.to_pyarrow_table().column("id").to_pylist()


def test_a_swap_refuses_a_rewrite_whose_rows_disagree_with_the_log(tmp_path: Path) -> None:
    where = _table(tmp_path, 4)
    root = location(str(tmp_path))
    dt = DeltaTable(str(where))
    step = compaction.plan(dt, "t", small_bytes=10**9, min_files=2, budget_bytes=10**9)
    assert step is not None
    with compaction.rewriting(root, step, dt) as done:
        short = compaction.Rewritten(done.step, done.staged, done.rows - 1, done.size)
        try:
            compaction.swap(root, short, DeltaTable(str(where)))
        except RuntimeError as exc:
            assert "nothing was changed" in str(exc)
        else:
            raise AssertionError("a rewrite with a row missing was swapped in")
    assert DeltaTable(str(where)).version() == dt.version()


def _actions(where: Path, version: int) -> list[dict[str, object]]:
    import json

    commit = where / "_delta_log" / f"{version:020d}.json"
    found = []
    for line in commit.read_text().splitlines():
        action = json.loads(line)
        for kind in ("add", "remove"):
            if kind in action:
                found.append(action[kind])
    return found


def test_commits_leave_checkpoints_to_the_upkeep_when_asked(tmp_path: Path) -> None:
    from digital_finance.engines.embedded import delta_io

    root = location(str(tmp_path))
    rows = pa.table({"id": pa.array([1], pa.int64())})
    logs = {}
    for name, kept_apart in (("inline", False), ("apart", True)):
        for batch in range(1, 102):  # delta-rs checkpoints every hundredth commit within it
            if kept_apart:
                with delta_io.checkpoints_kept_apart():
                    assert delta_io.append(root, name, rows.to_reader(), batch)
            else:
                assert delta_io.append(root, name, rows.to_reader(), batch)
        logs[name] = sorted(p.name for p in (tmp_path / name / "_delta_log").glob("*.checkpoint*"))
    assert len(logs["inline"]) == 1  # the hundredth commit's
    assert logs["apart"] == []
    assert delta_io.post_commit() is None  # the block ended: delta-rs's hooks again

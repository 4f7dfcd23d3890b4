"""Batch planning: files known by content, appends read from where the last read ended."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from digital_finance.runs.plan import Plan, PlannedFile, plan_run
from digital_finance.sources.discovery import InputError, InputFile, resolve_inputs


def _write(path: Path, text: str) -> InputFile:
    path.write_text(text)
    (info,) = resolve_inputs([str(path)])
    return info


def _touch(path: Path) -> InputFile:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    (info,) = resolve_inputs([str(path)])
    return info


def _committed(plan: Plan, batch_id: int = 1) -> list[tuple[int, PlannedFile]]:
    assert plan.new is not None
    return [(batch_id, pf) for pf in plan.new.files]


def test_new_files_get_the_next_batch_in_path_order(tmp_path: Path) -> None:
    b = _write(tmp_path / "b.jsonl", '{"b": 1}\n')
    a = _write(tmp_path / "a.jsonl", '{"a": 1}\n')
    plan = plan_run({"stocks": [a, b]}, [], set())
    assert plan.resume is None and plan.new is not None
    assert plan.new.batch_id == 1
    assert [Path(f.file.path).name for f in plan.new.files_of("stocks")] == ["a.jsonl", "b.jsonl"]
    assert all(f.start == 0 and f.first_line == 1 and f.sha256 for f in plan.new.files)


def test_files_read_before_are_skipped(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", '{"a": 1}\n')
    first = plan_run({"stocks": [a]}, [], set())
    b = _write(tmp_path / "b.jsonl", '{"b": 1}\n')
    plan = plan_run({"stocks": [a, b]}, _committed(first), {1})
    assert plan.new is not None and [f.file for f in plan.new.files] == [b]
    assert plan.new.batch_id == 2 and plan.skipped_files == 1


def test_a_touched_file_with_the_same_bytes_is_not_read_again(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    first = plan_run({"stocks": [_write(path, '{"a": 1}\n')]}, [], set())
    touched = _touch(path)
    plan = plan_run({"stocks": [touched]}, _committed(first), {1})
    assert plan.new is None and plan.skipped_files == 1 and plan.notes == []


def test_a_copy_under_another_name_is_skipped_and_said(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", '{"a": 1}\n')
    first = plan_run({"stocks": [a]}, [], set())
    copy = _write(tmp_path / "copy.jsonl", '{"a": 1}\n')
    plan = plan_run({"stocks": [a, copy]}, _committed(first), {1})
    assert plan.new is None and plan.skipped_files == 2
    assert plan.notes == [f"{copy.path} holds the same bytes as {a.path} (batch 1): skipped"]


def test_two_copies_in_one_run_are_read_once(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", '{"a": 1}\n')
    b = _write(tmp_path / "b.jsonl", '{"a": 1}\n')
    plan = plan_run({"stocks": [a, b]}, [], set())
    assert plan.new is not None and [f.file for f in plan.new.files] == [a]


def test_appended_lines_are_read_from_where_the_last_read_ended(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    first = plan_run({"stocks": [_write(path, '{"a": 1}\n\n{"a": 2}\n')]}, [], set())
    grown = _write(path, '{"a": 1}\n\n{"a": 2}\n{"a": 3}\n{"a": 4}\n')
    plan = plan_run({"stocks": [grown]}, _committed(first), {1})
    assert plan.new is not None
    (part,) = plan.new.files
    assert (part.start, part.first_line, part.file.size) == (
        len('{"a": 1}\n\n{"a": 2}\n'),
        4,
        grown.size,
    )
    assert "bytes appended since batch 1" in plan.notes[0]
    # and a third read goes on from the second
    again = _write(path, '{"a": 1}\n\n{"a": 2}\n{"a": 3}\n{"a": 4}\n{"a": 5}\n')
    third = plan_run({"stocks": [again]}, _committed(first) + _committed(plan, 2), {1, 2})
    assert third.new is not None
    assert (third.new.files[0].start, third.new.files[0].first_line) == (grown.size, 6)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ('{"a": 1}\n{"a": 2}', '{"a": 1}\n{"a": 2}\n{"a": 3}\n'),  # the last line had no line end
        ('{"a": 1}\n', '{"a": 9}\n{"a": 2}\n'),  # rewritten, longer
        ('{"a": 1}\n{"a": 2}\n', '{"a": 1}\n'),  # truncated
        ('[{"a": 1}]\n', '[{"a": 1}]\n{"a": 2}\n'),  # a JSON-array file is never read in parts
    ],
)
def test_a_file_that_is_not_an_append_is_read_whole_as_a_new_version(
    tmp_path: Path, before: str, after: str
) -> None:
    path = tmp_path / "a.json"
    first = plan_run({"stocks": [_write(path, before)]}, [], set())
    changed = _write(path, after)
    plan = plan_run({"stocks": [changed]}, _committed(first), {1})
    assert plan.new is not None and plan.new.files[0].start == 0
    assert plan.new.files[0].first_line == 1
    assert "changed since batch 1 and is not an append" in plan.notes[0]


def test_a_grown_gzip_file_is_a_new_version(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n'))
    (info,) = resolve_inputs([str(path)])
    first = plan_run({"stocks": [info]}, [], set())
    with open(path, "ab") as f:
        f.write(gzip.compress(b'{"a": 2}\n'))
    (grown,) = resolve_inputs([str(path)])
    plan = plan_run({"stocks": [grown]}, _committed(first), {1})
    assert plan.new is not None and plan.new.files[0].start == 0


def test_an_unfinished_batch_is_resumed_exactly(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", '{"a": 1}\n')
    first = plan_run({"stocks": [a]}, [], set())
    b = _write(tmp_path / "b.jsonl", '{"b": 1}\n')
    plan = plan_run({"stocks": [a, b]}, _committed(first), set())
    assert plan.resume is not None and plan.resume.batch_id == 1 and plan.resume.resumed
    assert plan.resume.files == first.new.files  # type: ignore[union-attr]
    assert (
        plan.new is not None and plan.new.batch_id == 2 and [f.file for f in plan.new.files] == [b]
    )


def test_resume_takes_a_touched_or_grown_file_with_the_planned_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    first = plan_run({"stocks": [_write(path, '{"a": 1}\n')]}, [], set())
    _touch(path)
    with open(path, "a") as f:
        f.write('{"a": 2}\n')
    plan = plan_run({"stocks": []}, _committed(first), set())
    assert plan.resume is not None and plan.resume.files == first.new.files  # type: ignore[union-attr]


def test_resume_refuses_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    first = plan_run({"stocks": [_write(path, '{"a": 1}\n')]}, [], set())
    path.write_text('{"a": 7}\n')
    with pytest.raises(InputError, match="changed since"):
        plan_run({"stocks": []}, _committed(first), set())


def test_resume_of_a_batch_planned_before_content_hashes_uses_the_file_stat(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", '{"a": 1}\n')
    legacy = [(1, PlannedFile("stocks", 0, a))]  # no sha256: planned by an older version
    assert plan_run({"stocks": []}, legacy, set()).resume is not None
    _touch(tmp_path / "a.jsonl")
    with pytest.raises(InputError, match="changed since"):
        plan_run({"stocks": []}, legacy, set())


def test_a_pattern_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no file or folder matches"):
        resolve_inputs([str(tmp_path / "missing-*.jsonl")])


def test_a_forgotten_path_is_read_again_whole(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    first = plan_run({"stocks": [_write(path, '{"a": 1}\n')]}, [], set())
    planned = _committed(first)
    again = InputFile.stat(path)
    assert plan_run({"stocks": [again]}, planned, {1}).new is None
    plan = plan_run({"stocks": [again]}, planned, {1}, forgotten={str(path.resolve()): 1})
    assert plan.new is not None and plan.new.batch_id == 2
    assert [pf.start for pf in plan.new.files] == [0]
    # a later read of it is known again: forgetting covered batches up to 1 only
    later = _committed(first) + _committed(plan, 2)
    assert (
        plan_run({"stocks": [again]}, later, {1, 2}, forgotten={str(path.resolve()): 1}).new is None
    )

"""Batch planning: what is new, what is resumed, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from digital_finance.runs.plan import PlannedFile, plan_run
from digital_finance.sources.discovery import InputError, InputFile, resolve_inputs


def _files(tmp_path: Path, *names: str) -> list[InputFile]:
    for n in names:
        (tmp_path / n).write_text("{}\n")
    return resolve_inputs([str(tmp_path / n) for n in names])


def test_new_files_get_the_next_batch_in_path_order(tmp_path: Path) -> None:
    files = _files(tmp_path, "b.jsonl", "a.jsonl")
    plan = plan_run({"stocks": files}, [], set())
    assert plan.resume is None and plan.new is not None
    assert plan.new.batch_id == 1
    assert [Path(f.file.path).name for f in plan.new.files_of("stocks")] == ["a.jsonl", "b.jsonl"]


def test_files_planned_before_are_skipped(tmp_path: Path) -> None:
    a, b = _files(tmp_path, "a.jsonl", "b.jsonl")
    plan = plan_run({"stocks": [a, b]}, [(1, PlannedFile("stocks", 0, a))], {1})
    assert plan.new is not None and [f.file for f in plan.new.files] == [b]
    assert plan.new.batch_id == 2 and plan.skipped_files == 1


def test_a_changed_file_is_a_new_version(tmp_path: Path) -> None:
    (a,) = _files(tmp_path, "a.jsonl")
    (tmp_path / "a.jsonl").write_text("{}\n{}\n")
    (changed,) = resolve_inputs([str(tmp_path / "a.jsonl")])
    plan = plan_run({"stocks": [changed]}, [(1, PlannedFile("stocks", 0, a))], {1})
    assert plan.new is not None and plan.new.files[0].file == changed


def test_an_unfinished_batch_is_resumed_exactly(tmp_path: Path) -> None:
    a, b = _files(tmp_path, "a.jsonl", "b.jsonl")
    plan = plan_run({"stocks": [a, b]}, [(1, PlannedFile("stocks", 0, a))], set())
    assert plan.resume is not None and plan.resume.batch_id == 1 and plan.resume.resumed
    assert plan.new is not None and plan.new.batch_id == 2


def test_resume_refuses_a_changed_file(tmp_path: Path) -> None:
    (a,) = _files(tmp_path, "a.jsonl")
    (tmp_path / "a.jsonl").write_text("changed\n")
    with pytest.raises(InputError, match="changed since"):
        plan_run({"stocks": []}, [(1, PlannedFile("stocks", 0, a))], set())


def test_a_pattern_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no file or folder matches"):
        resolve_inputs([str(tmp_path / "missing-*.jsonl")])

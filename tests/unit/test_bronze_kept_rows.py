"""Bronze's rows of a decided chunk: the lines whose `keep` is true, in order.

`bronze_ahead._kept` reads the verdicts from the boolean array's bitmaps and slices the
chunk between the blank lines (no pyarrow.compute on the batch's path), and filters it
where blank lines are many; both must give what `Table.filter` gives.
"""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from digital_finance.engines.embedded.bronze_ahead import _MAX_SLICES, _kept


def _chunk(n: int) -> pa.Table:
    return pa.Table.from_arrays([pa.array(range(n), pa.int64())], ["line_number"])


@pytest.mark.parametrize("blank_share", [0.0, 0.01, 0.5, 1.0])
@pytest.mark.parametrize("pieces", [1, 3])
def test_the_kept_rows_are_the_filtered_rows(blank_share: float, pieces: int) -> None:
    rng = random.Random(int(blank_share * 100) + pieces)
    n = 2_000
    verdicts = [None if rng.random() < 0.005 else rng.random() >= blank_share for _ in range(n)]
    whole = pa.array([True, *verdicts], pa.bool_()).slice(1)  # an offset into its bitmap
    cuts = sorted(rng.sample(range(1, n), pieces - 1))
    keep = pa.chunked_array(
        [whole.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    )
    kept = _kept(_chunk(n), keep)
    expected = [i for i, v in enumerate(verdicts) if v]  # a null is no record either
    assert kept.column("line_number").to_pylist() == expected
    # both ways are taken: slices for a few blank lines, the filter for many
    assert (n - len(expected) > _MAX_SLICES) == (blank_share >= 0.5)


def test_verdicts_for_other_lines_are_refused() -> None:
    with pytest.raises(ValueError, match="3 verdicts for 4 lines"):
        _kept(_chunk(4), pa.array([True, False, True]))


def test_a_null_typed_chunk_keeps_nothing() -> None:
    assert _kept(_chunk(3), pa.nulls(3)).num_rows == 0

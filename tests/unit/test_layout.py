"""The batch tag both engines write into a commit, read back from either form."""

from __future__ import annotations

from digital_finance.lakehouse.layout import BATCH_TAG, batch_user_metadata, tagged_batch


def test_a_commit_is_tagged_with_its_batch_by_either_engine() -> None:
    assert tagged_batch({BATCH_TAG: "12", "version": 3}) == 12  # delta-rs: a commitInfo key
    assert tagged_batch({"userMetadata": batch_user_metadata(7)}) == 7  # Delta Spark
    one_write = batch_user_metadata(7, "0f3a")  # and the write that made the commit
    assert one_write == f"{BATCH_TAG}=7;write=0f3a"
    assert tagged_batch({"userMetadata": one_write}) == 7
    assert tagged_batch({"userMetadata": "someone else's note"}) is None
    assert tagged_batch({"operation": "OPTIMIZE"}) is None
    assert tagged_batch({BATCH_TAG: "not a number"}) is None

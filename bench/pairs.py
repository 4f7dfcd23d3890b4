"""What the paired benchmarks share: the A/B ratio of another checkout, and where results go."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def compared(
    summary: dict[str, object], other: str, theirs: list[float], ours: list[float]
) -> None:
    """Add to `summary`, and print, another checkout's times over ours, pair by pair."""
    ratios = [t / o for t, o in zip(theirs, ours, strict=True)]
    summary["compare_src"] = other
    summary["compare_seconds"] = theirs
    summary["compare_over_ours_median"] = statistics.median(ratios)
    print(
        f"{other} time / ours: median {statistics.median(ratios):.2f}x "
        f"(range {min(ratios):.2f}-{max(ratios):.2f}) over {len(ratios)} pair(s)"
    )


def write_results(name: str, summary: dict[str, object]) -> Path:
    """`bench/results/<name>.json`."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(summary, indent=2))
    return path

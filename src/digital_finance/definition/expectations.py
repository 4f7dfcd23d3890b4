"""Data-quality expectations: a named SQL condition over typed columns, and what to do on failure.

The condition is a boolean SQL expression (`price < 1000000`, `volume IS NOT NULL`) that both
DuckDB and Spark SQL evaluate. A record passes only when the condition is TRUE; FALSE and NULL
both count as a failure, so `volume < 100` flags a record without a volume.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from digital_finance.errors import TerminalError


class Action(enum.Enum):
    """What happens to a record (or the run) that fails an expectation."""

    WARN = "warn"  # keep the record, count the failure
    QUARANTINE = "quarantine"  # move the record to quarantine with the expectation as reason
    FAIL = "fail"  # stop the run before anything reaches silver or gold


class ExpectationError(TerminalError):
    """An engine cannot evaluate a user expectation (bad SQL, unknown column)."""

    @classmethod
    def unusable(
        cls, dataset: str, rules: list[Expectation], columns: list[str], cause: Exception
    ) -> ExpectationError:
        """The error for a dataset whose conditions the engine refused, naming the columns."""
        names = ", ".join(e.name for e in rules)
        return cls(
            f"the expectations on {dataset} ({names}) cannot be evaluated: {cause}. "
            f"Conditions are SQL over the columns {', '.join(columns)}."
        )


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Expectation:
    """One data-quality rule on a dataset.

    `builtin` marks the contract's own rules (their condition is the contract itself, checked by
    the engine's contract step); users may raise their action to `fail` but not lower it.
    """

    name: str
    dataset: str
    condition: str | None
    action: Action
    builtin: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"expectation name {self.name!r} must be lower-case letters, digits and "
                "underscores, starting with a letter"
            )
        if not self.builtin and not (self.condition and self.condition.strip()):
            raise ValueError(f"expectation {self.name!r} needs a condition")

"""The roots of every error the library raises, split by whether retrying can help.

A caller (the CLI, a stream, the HTTP service, an Airflow task) decides from the class alone:
a `TerminalError` needs a change by a person (an input, a setting, a rule), so the same call
will fail again; a `TransientError` came from the moment (another writer, a file being
written, a network blip), so the same call may succeed later. Both carry their message for
people and survive pickling, so they cross process boundaries (Spark tasks, worker pools).
"""

from __future__ import annotations

from typing import ClassVar


class DigitalFinanceError(Exception):
    """Anything the library refuses or fails at; `retryable` says whether to try again."""

    retryable: ClassVar[bool] = False


class TerminalError(DigitalFinanceError):
    """Retrying will not help: the message says what to change."""


class TransientError(DigitalFinanceError):
    """Retrying may help: nothing was committed that a retry would double."""

    retryable: ClassVar[bool] = True

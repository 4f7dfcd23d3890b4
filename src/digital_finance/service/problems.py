"""Error answers of the API: RFC 9457 problem documents, the same shape for every route.

A problem's `detail` says what to change; it never holds a stack trace, a token, a key or
a record's content beyond what the caller sent (its index and the reason).
"""

from __future__ import annotations

import json
from typing import Any

PROBLEM_TYPE = "application/problem+json"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ApiError(Exception):
    """A request refused: its status, what to tell the caller, and headers to add."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors  # per record: index (and line), reasons


def problem(
    status: int, detail: str, request_id: str, errors: list[dict[str, Any]] | None = None
) -> bytes:
    """The problem document's bytes."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "request_id": request_id,
    }
    if errors is not None:
        body["errors"] = errors
    return json.dumps(body, separators=(",", ":")).encode()

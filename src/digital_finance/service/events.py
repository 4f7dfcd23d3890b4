"""`POST /v1/events/{dataset}`: records in, durable, answered — the service's hot path.

A request is answered by this plain ASGI handler, not by FastAPI's routing and validation
(which cost four times the whole of it: docs/DECISIONS.md); FastAPI still serves the route
for its OpenAPI document. The order is the cheapest refusal first: the caller (401), its
right to the dataset (403), its rate (429), the media type (415), the body's size while it
arrives (413), the records themselves (400). Only then is the request written to the
durable log, and 202 is sent once the log's group commit has fsynced it.

With an `Idempotency-Key`, the answer is stored with the records, in the same log frame:
a retry of a request that was made durable gets the first answer again (and writes
nothing), whether or not the service restarted in between; a retry while the first is
still being written waits for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from digital_finance.contract.schemas import DATASETS
from digital_finance.errors import TransientError
from digital_finance.service.audit import AuditLog
from digital_finance.service.auth import AuthError, Principal
from digital_finance.service.body import read_body
from digital_finance.service.callers import Callers
from digital_finance.service.deadlines import Deadlines
from digital_finance.service.durable_log import DurableLog, Receipt
from digital_finance.service.edge import EdgeLimits, check_records, split_records
from digital_finance.service.metrics import ServiceMetrics
from digital_finance.service.problems import PROBLEM_TYPE, ApiError, problem
from digital_finance.service.rate_limit import RateLimits, retry_after

PREFIX = "/v1/events/"
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
JSON_TYPES = ("application/json",)
MAX_KEY_LENGTH = 255
MAX_REJECTED_LISTED = 1_000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventsConfig:
    """What the handler needs to know besides its collaborators."""

    max_body_bytes: int
    timeout_seconds: float
    source_tz: str
    limits: EdgeLimits


class EventsHandler:
    """Answers `POST /v1/events/{dataset}`."""

    def __init__(
        self,
        config: EventsConfig,
        callers: Callers,
        rates: RateLimits,
        log: Callable[[], DurableLog],
        metrics: ServiceMetrics,
        audit: AuditLog | None = None,
    ) -> None:
        self.config = config
        self.audit = audit
        self.callers = callers
        self.rates = rates
        self.log = log  # opened by the service's start-up, after this handler exists
        self.metrics = metrics
        self._writing: dict[tuple[str, str], asyncio.Future[None]] = {}
        self.deadlines = Deadlines()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = _headers(scope)
        request_id = _request_id(headers.get("x-request-id"))
        dataset = scope["path"][len(PREFIX) :]
        who: Principal | None = None
        facts: dict[str, Any] = {}
        # asyncio asks the OS for the process id each time it looks up the running loop:
        # looked up once here, and handed on
        task = asyncio.current_task()
        assert task is not None
        try:
            who = await self.callers.identify(
                headers.get("authorization"), headers.get("x-api-key")
            )
            status, body, extra = await self._accept(
                who, dataset, headers, receive, facts, request_id, task
            )
        except AuthError as exc:
            status, extra = exc.status, {"www-authenticate": exc.www_authenticate}
            body = problem(exc.status, exc.detail, request_id)
        except ApiError as exc:
            status, extra = exc.status, exc.headers
            body = problem(exc.status, exc.detail, request_id, exc.errors)
        content_type = "application/json" if status < 400 else PROBLEM_TYPE
        await _answer(send, status, body, content_type, request_id, extra)
        self.metrics.request("events", status, time.perf_counter() - started)
        if self.audit is not None:
            self.audit.write(_audit_line(request_id, who, dataset, status, facts, scope))

    async def _accept(
        self,
        who: Principal,
        dataset: str,
        headers: dict[str, str],
        receive: Receive,
        facts: dict[str, Any],
        request_id: str,
        task: asyncio.Task[Any],
    ) -> tuple[int, bytes, dict[str, str]]:
        spec = DATASETS.get(dataset)
        if spec is None:
            raise ApiError(404, f"no dataset {dataset!r}; the datasets are {', '.join(DATASETS)}")
        if not who.may_write(dataset):
            raise ApiError(
                403, f"the caller may not write {dataset} (needs events.write:{dataset})"
            )
        wait = self.rates.take(who.subject)
        if wait > 0:
            raise ApiError(
                429,
                f"too many requests: the limit is {self.rates.rate:g} a second",
                headers={"retry-after": retry_after(wait)},
            )
        ndjson = _media_type(headers.get("content-type"))
        gzipped = _gzipped(headers.get("content-encoding"))
        key = _idempotency_key(headers.get("idempotency-key"))
        limit = self.config.timeout_seconds
        phase = "body"
        # one deadline for reading the body and making it durable (each one costs)
        deadline = self.deadlines.enter(limit, task)
        try:
            try:
                body = await read_body(
                    receive,
                    content_length=headers.get("content-length"),
                    gzipped=gzipped,
                    max_bytes=self.config.max_body_bytes,
                )
                phase = "write"
                return await self._taken(
                    who, dataset, body, ndjson, key, facts, request_id, task.get_loop()
                )
            except asyncio.CancelledError:
                deadline.raise_if_expired()
                raise
            finally:
                deadline.leave()
        except TimeoutError:
            if phase == "body":
                raise ApiError(408, f"the body did not arrive within {limit:g} s") from None
            raise ApiError(
                503,
                "the records were not made durable in time; retry (with the same "
                "Idempotency-Key, so nothing is doubled)",
                headers={"retry-after": "1"},
            ) from None

    async def _taken(
        self,
        who: Principal,
        dataset: str,
        body: bytes,
        ndjson: bool,
        key: str | None,
        facts: dict[str, Any],
        request_id: str,
        loop: asyncio.AbstractEventLoop,
    ) -> tuple[int, bytes, dict[str, str]]:
        if key is None:
            return await self._write(who, dataset, body, ndjson, None, facts, request_id, loop)
        facts["idempotency_key"] = key
        scope = (who.subject, key)
        digest = hashlib.sha256(body).hexdigest()
        while True:
            replay = self._replay(who.subject, key, digest, dataset, facts)
            if replay is not None:
                return replay
            pending = self._writing.get(scope)
            if pending is None:
                break
            await asyncio.shield(pending)  # the first try's answer, then its receipt
        done: asyncio.Future[None] = loop.create_future()
        self._writing[scope] = done
        written: list[asyncio.Future[Any]] = []

        def release(_: object = None) -> None:
            if self._writing.get(scope) is done:
                del self._writing[scope]
            if not done.done():
                done.set_result(None)

        try:
            return await self._write(
                who, dataset, body, ndjson, (key, digest), facts, request_id, loop, written
            )
        finally:
            # a write that timed out may still land: a retry waits for it, then finds its
            # receipt, rather than writing the records a second time
            if written and not written[0].done():
                written[0].add_done_callback(release)
            else:
                release()

    def _replay(
        self, subject: str, key: str, digest: str, dataset: str, facts: dict[str, Any]
    ) -> tuple[int, bytes, dict[str, str]] | None:
        receipt = self.log().receipt(subject, key)
        if receipt is None:
            return None
        if receipt.body_sha256 != digest or receipt.dataset != dataset:
            raise ApiError(
                409,
                "this Idempotency-Key was used for a different request; use a new key for "
                "new records",
            )
        facts["replayed"] = True
        return 202, receipt.response.encode(), {"idempotent-replayed": "true"}

    async def _write(
        self,
        who: Principal,
        dataset: str,
        body: bytes,
        ndjson: bool,
        key: tuple[str, str] | None,
        facts: dict[str, Any],
        request_id: str,
        loop: asyncio.AbstractEventLoop,
        written: list[asyncio.Future[Any]] | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        spec = DATASETS[dataset]
        values, lines = split_records(body, ndjson)
        checked = check_records(values, lines, spec, self.config.source_tz, self.config.limits)
        answer = _answer_text(request_id, dataset, len(values), checked)
        receipt = (
            Receipt(who.subject, key[0], key[1], dataset, answer, time.time())
            if key is not None
            else None
        )
        try:
            durable = self.log().append_future(dataset, values, receipt, loop)
            if written is not None:
                written.append(durable)
            await asyncio.shield(durable)  # the request's timeout must not withdraw them
        except TransientError as exc:
            log.error("request %s: the records could not be made durable: %s", request_id, exc)
            raise ApiError(
                503,
                "the records could not be made durable; retry later (the service's log says why)",
                headers={"retry-after": "5"},
            ) from None
        facts.update(
            received=len(values), accepted=checked.accepted, rejected=len(checked.rejected)
        )
        self.metrics.records(dataset, checked.accepted, len(checked.rejected))
        return 202, answer.encode(), {}


def _answer_text(request_id: str, dataset: str, received: int, checked: Any) -> str:
    if not checked.rejected and request_id.isalnum():
        # the usual answer, without the encoder (a tenth of a single-record request)
        return (
            f'{{"request_id":"{request_id}","dataset":"{dataset}","received":{received},'
            f'"accepted":{checked.accepted},"rejected":[]}}'
        )
    return json.dumps(
        {
            "request_id": request_id,
            "dataset": dataset,
            "received": received,
            "accepted": checked.accepted,
            # the first ones: the answer is kept with an idempotency key, so it is bounded
            "rejected": checked.rejected[:MAX_REJECTED_LISTED],
        },
        separators=(",", ":"),
    )


def _headers(scope: Scope) -> dict[str, str]:
    # the last value of a repeated header wins; header names arrive lower-cased (ASGI)
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


# a random prefix per process and a counter: unique, and far cheaper than uuid4 per request
_ID_PREFIX = os.urandom(6).hex()
_ids = itertools.count(1)


def _request_id(given: str | None) -> str:
    if given and len(given) <= 128 and given.isprintable() and given.isascii():
        return given
    return f"{_ID_PREFIX}{next(_ids):010x}"


def _media_type(value: str | None) -> bool:
    """Whether the body is NDJSON (else JSON); 415 for any other media type."""
    kind = (value or "").split(";", 1)[0].strip().lower()
    if kind in NDJSON_TYPES:
        return True
    if kind in JSON_TYPES:
        return False
    raise ApiError(
        415,
        "Content-Type must be application/json (one object or an array of objects) or "
        "application/x-ndjson (one object a line)",
    )


def _gzipped(value: str | None) -> bool:
    coding = (value or "identity").strip().lower()
    if coding in ("identity", ""):
        return False
    if coding in ("gzip", "x-gzip"):
        return True
    raise ApiError(415, "Content-Encoding must be gzip or absent")


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    key = value.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise ApiError(
            400, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    return key


async def _answer(
    send: Send, status: int, body: bytes, content_type: str, request_id: str, extra: dict[str, str]
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        *((k.encode(), v.encode()) for k, v in extra.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _audit_line(
    request_id: str,
    who: Principal | None,
    dataset: str,
    status: int,
    facts: dict[str, Any],
    scope: Scope,
) -> dict[str, Any]:
    client = scope.get("client")
    return {
        "event": "write",
        "request_id": request_id,
        "who": who.subject if who is not None else None,
        "name": who.name if who is not None else None,
        "dataset": dataset[:64],
        "status": status,
        "client": client[0] if client else None,
        **facts,
    }

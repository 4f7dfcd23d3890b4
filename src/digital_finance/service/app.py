"""The ingestion service: one ASGI application, `digital-finance serve` runs it (uvicorn).

`POST /v1/events/{dataset}` goes straight to `events.EventsHandler`; every other route is
FastAPI's, which also documents the events route (`/openapi.json`). Starting the service
opens the durable log (one service per log folder), fetches the issuer's keys when JWTs
are configured, and starts the ingester; stopping it lets the batch under way commit and
closes the log. Whatever the log holds beyond the tables is ingested by the next start.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from digital_finance.lakehouse.storage import Location
from digital_finance.service.audit import AuditLog
from digital_finance.service.auth import AuthError, Principal
from digital_finance.service.auth.api_keys import ApiKeyStore
from digital_finance.service.auth.jwt_bearer import JwtVerifier
from digital_finance.service.callers import Callers
from digital_finance.service.durable_log import DurableLog
from digital_finance.service.edge import SERVER_OWNED, EdgeLimits
from digital_finance.service.events import PREFIX, EventsConfig, EventsHandler
from digital_finance.service.ingester import Ingester
from digital_finance.service.metrics import ServiceMetrics
from digital_finance.service.problems import PROBLEM_TYPE, ApiError, problem
from digital_finance.service.rate_limit import RateLimits, retry_after
from digital_finance.service.tables import list_tables, read_page
from digital_finance.streaming.loop import StreamOptions

if TYPE_CHECKING:
    from digital_finance.config import RunConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceConfig:
    """Everything `serve` resolved from its flags and `[api]`."""

    root: Location
    run: RunConfig
    output: str  # as given: the ingester process opens the lakehouse itself
    config_file: Path | None
    log_dir: Path
    keys_file: Path
    jwt: Any  # settings.JwtSettings | None (None: no bearer JWTs)
    max_body_bytes: int
    limits: EdgeLimits
    rate_per_second: float
    rate_burst: int
    timeout_seconds: float
    idempotency_seconds: float
    max_page_rows: int
    stream: StreamOptions
    metrics_anonymous: bool = False
    audit_log: Path | None = None  # None: stderr
    ingest_nice: int = 0  # steps of `nice` the ingester process runs below the service


class DatasetName(StrEnum):
    """The datasets of the contract."""

    stocks = "stocks"
    mutual_funds = "mutual_funds"


class Layer(StrEnum):
    """The layers whose tables the API reads."""

    bronze = "bronze"
    silver = "silver"
    gold = "gold"
    quarantine = "quarantine"


class TableName(StrEnum):
    """The tables of a layer (gold has one: `stock_fund_holdings`)."""

    stocks = "stocks"
    mutual_funds = "mutual_funds"
    stock_fund_holdings = "stock_fund_holdings"


class Rejected(BaseModel):
    """A record quarantine will hold, and why."""

    index: int
    line: int | None = None
    reasons: list[str]


class Accepted(BaseModel):
    """The answer to a write: every record is durable and will reach bronze exactly once."""

    request_id: str
    dataset: str
    received: int
    accepted: int
    rejected: list[Rejected]


class Problem(BaseModel):
    """An error (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    request_id: str
    errors: list[Rejected] | None = None


class TableEntry(BaseModel):
    """One table."""

    name: str
    layer: str
    table: str
    version: int
    rows: int
    updated: str


class TableList(BaseModel):
    """Every table that exists."""

    tables: list[TableEntry]


class TablePage(BaseModel):
    """A page of rows, read at `version`; `next` reads the following page at the same one."""

    table: str
    version: int
    columns: list[str]
    rows: list[dict[str, Any]]
    next: str | None


PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_TYPE: {}}, "description": why}
    for status, why in {
        400: "the request cannot be taken (nothing of it was kept)",
        401: "no valid credentials",
        403: "the caller's roles do not allow this",
        404: "no such dataset or table",
        408: "the body did not arrive in time",
        413: "the body, or its record count, is over the limit",
        415: "unsupported Content-Type or Content-Encoding",
        409: "the Idempotency-Key is bound to another request (body or dataset)",
        429: "over the caller's rate limit; see Retry-After",
        503: "not ready, or the records could not be made durable; retry",
    }.items()
}


def _pick(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: PROBLEMS[c] for c in codes}


MAX_OFFSET = 10_000_000  # rows skipped by one page: paging reads them, so it is bounded

bearer = HTTPBearer(auto_error=False, description="A JWT from the issuer, or an API key")
api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")


class Service:
    """The ASGI application: the events fast path, then FastAPI."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.metrics = ServiceMetrics()
        self.keys = ApiKeyStore(config.keys_file)
        self.jwt = JwtVerifier(config.jwt) if config.jwt is not None else None
        self.callers = Callers(self.keys, self.jwt)
        self.durable: DurableLog | None = None
        self.ingester: Ingester | None = None
        self.reader = config.root
        self.audit = AuditLog(config.audit_log)
        self.events = EventsHandler(
            EventsConfig(
                config.max_body_bytes,
                config.timeout_seconds,
                config.run.source_tz,
                config.limits,
            ),
            self.callers,
            RateLimits(config.rate_per_second, config.rate_burst),
            self._log,
            self.metrics,
            self.audit,
        )
        self.app = self._fastapi()

    def _log(self) -> DurableLog:
        if self.durable is None:
            raise ApiError(503, "the service is starting; retry", headers={"retry-after": "1"})
        return self.durable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith(PREFIX)
        ):
            await self.events(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def start(self) -> None:
        """Open the log, load the issuer's keys, start ingesting (once: `serve` starts the
        service before uvicorn, whose start-up calls this again)."""
        if self.durable is not None:
            return
        c = self.config
        if self.jwt is not None:
            self.jwt.prefetch()
        durable = DurableLog(c.log_dir, idempotency_seconds=c.idempotency_seconds)
        durable.open()
        self.durable = durable
        self.ingester = Ingester(
            c.output, c.config_file, durable, c.stream, self.metrics, nice=c.ingest_nice
        )
        self.ingester.start()

    def stop(self) -> None:
        """Let the batch under way commit; close the log."""
        if self.ingester is not None:
            self.ingester.stop()
        if self.durable is not None:
            self.durable.close()
            self.durable = None
        self.audit.close()

    def _fastapi(self) -> FastAPI:
        service = self

        @asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            service.start()
            try:
                yield
            finally:
                service.stop()

        app = FastAPI(
            title="Digital Finance ingestion API",
            version="1",
            description=(
                "Events in (durable before 202, exactly once into bronze and silver), "
                "tables out. Every route but /healthz and /readyz needs a bearer JWT or an "
                "API key. See docs/API.md."
            ),
            lifespan=lifespan,
        )
        app.state.service = self

        @app.exception_handler(AuthError)
        async def auth_failed(request: Request, exc: AuthError) -> Response:
            return _problem(
                request, exc.status, exc.detail, {"www-authenticate": exc.www_authenticate}
            )

        @app.exception_handler(ApiError)
        async def refused(request: Request, exc: ApiError) -> Response:
            return _problem(request, exc.status, exc.detail, exc.headers)

        @app.exception_handler(RequestValidationError)
        async def invalid(request: Request, exc: RequestValidationError) -> Response:
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ()))
            return _problem(request, 400, f"{where}: {first.get('msg', 'invalid')}")

        @app.exception_handler(StarletteHTTPException)
        async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
            return _problem(request, exc.status_code, str(exc.detail), dict(exc.headers or {}))

        @app.post(
            PREFIX + "{dataset}",
            status_code=202,
            response_model=Accepted,
            responses=_pick(400, 401, 403, 404, 408, 409, 413, 415, 429, 503),
            summary="Send events",
            openapi_extra={
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 255,
                            "pattern": "^[!-~]([ -~]*[!-~])?$",
                        },
                        "description": "A retry with the same key and body is answered as "
                        "the first was, and writes nothing",
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Record"},
                                    {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Record"},
                                        "minItems": 1,
                                        "maxItems": service.config.limits.max_records,
                                    },
                                ]
                            }
                        },
                        "application/x-ndjson": {"schema": {"type": "string"}},
                    },
                },
            },
        )
        async def send_events(dataset: DatasetName, request: Request, who: Caller) -> Response:
            """One JSON object, a JSON array of objects, or NDJSON; a body may be gzipped
            (`Content-Encoding: gzip`). The answer comes once every record is durable; it
            lists the records quarantine will hold, with their reasons."""
            return _Passed(service.events)  # the same handler as the fast path

        @app.get("/v1/tables", response_model=TableList, responses=_pick(401, 403, 429, 503))
        def tables(who: Caller) -> Any:
            """Every table that exists, with its version and row count."""
            _may_read(who)
            return list_tables(service.reader)

        @app.get(
            "/v1/tables/{layer}/{name}",
            response_model=TablePage,
            responses=_pick(400, 401, 403, 404, 429, 503),
        )
        def table_rows(
            layer: Layer,
            name: TableName,
            who: Caller,
            request: Request,
            columns: Annotated[str | None, Query(description="comma-separated")] = None,
            filter: Annotated[
                list[str] | None,
                Query(description="column:op:value, op one of eq ne lt le gt ge; ANDed"),
            ] = None,
            limit: Annotated[int, Query(ge=1, description="at most [api] max_page_rows")] = 100,
            offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
            as_of: Annotated[int | None, Query(ge=0, description="a table version")] = None,
        ) -> Any:
            """A page of rows: chosen columns, simple filters, at a version."""
            _may_read(who)
            if limit > service.config.max_page_rows:
                raise ApiError(
                    400, f"limit is at most {service.config.max_page_rows:,} rows a page"
                )
            return read_page(
                service.reader, layer.value, name.value, columns=columns, filters=filter or [],
                limit=limit, offset=offset, as_of=as_of, path=request.url.path,
            )  # fmt: skip

        @app.get("/healthz", responses={200: {"description": "the process serves"}})
        def healthz() -> dict[str, str]:
            """Alive."""
            return {"status": "ok"}

        @app.get("/readyz", responses=_pick(503))
        def readyz() -> dict[str, Any]:
            """Ready to take events: the log is open and the ingester is not failing."""
            return service.readiness()

        @app.get(
            "/metrics",
            response_class=Response,
            responses={200: {"content": {"text/plain": {}}}, **_pick(401, 403, 503)},
            openapi_extra={"security": [{"HTTPBearer": []}, {"APIKeyHeader": []}]},
        )
        async def metrics(request: Request) -> Response:
            """Prometheus metrics (needs the admin role unless [api] metrics_anonymous)."""
            if not service.config.metrics_anonymous:
                who = await _caller(request)
                if not who.is_admin:
                    raise ApiError(403, "reading metrics needs the admin role")
            return Response(
                service.metrics.exposition(),
                media_type="text/plain; version=0.0.4; charset=utf-8",
            )

        plain = app.openapi

        def documented() -> dict[str, Any]:
            # routes answer a bad parameter with 400 (a problem document), never FastAPI's 422
            if app.openapi_schema is None:
                doc = plain()
                for item in doc["paths"].values():
                    for operation in item.values():
                        operation.get("responses", {}).pop("422", None)
                rows = doc["paths"]["/v1/tables/{layer}/{name}"]["get"]["parameters"]
                for parameter in rows:
                    if parameter["name"] == "limit":
                        parameter["schema"]["maximum"] = service.config.max_page_rows
                schemas = doc.setdefault("components", {}).setdefault("schemas", {})
                schemas["Record"] = {
                    "type": "object",
                    "description": "One event (docs/CONTRACT_RULES.md); fields the server "
                    "owns are refused",
                    "propertyNames": {"not": {"enum": sorted(SERVER_OWNED)}},
                }
                for name in ("HTTPValidationError", "ValidationError"):
                    schemas.pop(name, None)
                app.openapi_schema = doc
            return app.openapi_schema

        app.openapi = documented  # type: ignore[method-assign]
        return app

    def readiness(self) -> dict[str, Any]:
        """What `/readyz` answers; `ApiError` 503 naming what is wrong."""
        if self.durable is None or self.ingester is None:
            raise ApiError(503, "the service is starting")
        state = self.ingester.state
        if not self.ingester.alive:
            raise ApiError(503, "the ingester stopped")
        if state.error is not None:
            # the error itself is in the service's log: it may name paths and hosts
            raise ApiError(503, "ingesting the log is failing; the service's log says why")
        log = self.durable
        return {
            "status": "ready",
            "ingesting": state.running,  # false while the ingester process starts again
            "batches": state.batches,
            "records": state.records,
            "log": {
                d: {"durable": log.durable_end(d), "in_tables": state.positions.get(d)}
                for d in log.datasets
            },
        }


async def _caller(
    request: Request,
    _bearer: Annotated[Any, Security(bearer)] = None,
    _key: Annotated[Any, Security(api_key)] = None,
) -> Principal:
    """The authenticated caller of a FastAPI route (401 otherwise)."""
    service: Service = request.app.state.service
    h = request.headers
    who = await service.callers.identify(h.get("authorization"), h.get("x-api-key"))
    wait = service.events.rates.take(who.subject)  # one bucket per caller, reads and writes
    if wait > 0:
        raise ApiError(429, "too many requests", headers={"retry-after": retry_after(wait)})
    return who


Caller = Annotated[Principal, Depends(_caller)]


def _may_read(who: Principal) -> None:
    if not who.may_read():
        raise ApiError(403, "reading tables needs the tables.read role")


def _problem(
    request: Request, status: int, detail: str, headers: dict[str, str] | None = None
) -> Response:
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    return Response(
        problem(status, detail, request_id),
        status_code=status,
        media_type=PROBLEM_TYPE,
        headers=headers,
    )


class _Passed(Response):
    """Hands the request to an ASGI handler that answers it itself."""

    def __init__(self, handler: EventsHandler) -> None:
        super().__init__()
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)

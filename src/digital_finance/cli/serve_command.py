"""`digital-finance serve`: the ingestion API on uvicorn, until SIGTERM or Ctrl-C.

The log folder is opened and the ingester started before the port is bound, so a mistake
(a second service on the same log folder, an issuer that cannot be reached) is one clear
line and exit code 2, not a traceback from inside the server.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from digital_finance.cli.console import err_console, fail
from digital_finance.config import ConfigError, load_config
from digital_finance.errors import TerminalError, TransientError
from digital_finance.lakehouse.storage import StorageError, location


@dataclass(frozen=True)
class ServeRequest:
    """What the command line asked for; None: the `[api]` setting (or its default)."""

    output: str
    config: Path | None
    host: str | None
    port: int | None
    log_dir: Path | None
    keys_file: Path | None


def serve(request: ServeRequest) -> int:
    """Run the service; returns the exit code."""
    from digital_finance.logs import configure_from_environment

    configure_from_environment()
    try:
        import uvicorn

        from digital_finance.service.app import Service, ServiceConfig
    except ImportError as exc:
        fail(
            f"serve needs the api extra ({exc.name} is missing): pip install 'digital-finance[api]'"
        )
    from digital_finance.service.edge import EdgeLimits
    from digital_finance.settings import ApiSettings
    from digital_finance.streaming.loop import StreamOptions

    try:
        config = load_config(request.config)
        root = location(request.output, config.plain_storage_options())
    except (ConfigError, StorageError, ValueError) as exc:
        fail(str(exc))
    found = config.settings
    api: ApiSettings = found.api if found is not None else ApiSettings()
    stream = found.stream if found is not None else None
    jwt = api.jwt if api.jwt.issuer is not None else None
    if jwt is not None and (not jwt.audiences or not jwt.jwks_url):
        fail("[api.jwt] issuer is set: set audiences and jwks_url too (docs/API.md)")
    service_config = ServiceConfig(
        root=root,
        run=config,
        output=request.output,
        config_file=request.config,
        log_dir=request.log_dir or api.log_dir,
        keys_file=request.keys_file or api.keys_file,
        jwt=jwt,
        max_body_bytes=api.max_body_bytes,
        limits=EdgeLimits(
            api.max_records, api.max_record_bytes, api.max_depth, api.max_string_bytes
        ),
        rate_per_second=api.rate_per_second,
        rate_burst=api.rate_burst,
        timeout_seconds=api.request_timeout_seconds,
        idempotency_seconds=api.idempotency_hours * 3600,
        max_page_rows=api.max_page_rows,
        stream=StreamOptions(
            trigger_seconds=stream.trigger_seconds if stream else 1.0,
            max_batch_records=stream.max_batch_records if stream else 50_000,
            maintain_every_seconds=stream.maintain_every_seconds if stream else 60.0,
        ),
        metrics_anonymous=api.metrics_anonymous,
        audit_log=api.audit_log,
        ingest_nice=api.ingest_nice,
    )
    host = request.host or api.host
    port = request.port if request.port is not None else api.port
    try:
        service = Service(service_config)
        if jwt is None and not service.keys.list():
            err_console.print(
                "[yellow]warning:[/] no API key and no [api.jwt] issuer: every request will be "
                f"refused. Create a key: digital-finance apikey create --keys-file "
                f"{service_config.keys_file} --owner NAME --role events.write:stocks"
            )
        service.start()
    except (TerminalError, ValueError) as exc:
        fail(str(exc))
    except TransientError as exc:
        fail(str(exc), code=75)
    err_console.print(
        f"serving http://{host}:{port} (lakehouse {root.uri}, log {service_config.log_dir}); "
        "Ctrl-C stops"
    )
    # uvicorn stops gracefully on SIGTERM / Ctrl-C, then raises the signal again with the
    # handlers it found; these make that last step an orderly exit 0, as `stream` does
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _stopped)
    try:
        uvicorn.run(
            service,
            host=host,
            port=port,
            http="httptools",
            loop="uvloop",
            lifespan="on",
            access_log=False,  # the audit log has one line per write
            log_level="warning",
            server_header=False,
            # a client's own X-Forwarded-For is believed only from a proxy the config names
            proxy_headers=bool(api.trusted_proxies),
            forwarded_allow_ips=",".join(api.trusted_proxies) or None,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=30,
        )
    except _Stopped:
        pass
    finally:
        service.stop()
    return 0


class _Stopped(Exception):
    """The service was asked to stop and has."""


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped

"""`digital-finance`: the command line. Heavy libraries load inside the commands that use them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digital_finance.cli import process  # first of ours: it sets what numpy reads
from digital_finance.cli.apikey_command import apikey_app
from digital_finance.cli.console import fail

app = typer.Typer(
    name="digital-finance",
    help="Turn JSON financial events into clean, exact, de-duplicated Delta Lake tables.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,  # cli/errors.py says what went wrong; --debug shows where
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"digital-finance {version('digital-finance')}")
        raise typer.Exit(0)


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="On an unexpected error, print the traceback too."),
    ] = False,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Turn JSON financial events into clean, exact, de-duplicated Delta Lake tables."""
    import os

    if debug:
        os.environ["DIGITAL_FINANCE_DEBUG"] = "1"


OutputOpt = Annotated[
    str,
    typer.Option(
        "--output",
        "-o",
        metavar="DIR|URI",
        help="Root of the lakehouse tables: a folder, or abfss://… / az://… (docs/STORAGE.md).",
    ),
]

EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        metavar="embedded|spark",
        help="embedded (DuckDB + deltalake, one machine) or spark (PySpark + Delta Spark).",
    ),
]
MasterOpt = Annotated[
    str | None,
    typer.Option(
        "--master",
        metavar="URL",
        help="Spark master, e.g. local[4] or spark://host:7077 (default: local[2], or the "
        "cluster's own session under spark-submit and on Databricks).",
    ),
]
ConfOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--conf", metavar="KEY=VALUE", help="A Spark setting, passed through. Repeatable."
    ),
]


def spark_settings(engine: str, master: str | None, conf: list[str] | None) -> dict[str, str]:
    """`--conf KEY=VALUE` items as a dict; refused without `--engine spark`."""
    if engine not in ("embedded", "spark"):
        fail(f"--engine must be embedded or spark, not {engine!r}")
    if engine != "spark" and (master or conf):
        fail("--master and --conf are Spark settings: add --engine spark")
    settings: dict[str, str] = {}
    for item in conf or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--conf takes KEY=VALUE, e.g. spark.sql.shuffle.partitions=8; got {item!r}")
        settings[key.strip()] = value
    return settings


@app.command()
def run(
    stocks: Annotated[
        list[str] | None,
        typer.Option(
            "--stocks",
            metavar="PATH",
            help="Stock records: a file, a folder or a glob. Repeatable.",
        ),
    ] = None,
    funds: Annotated[
        list[str] | None,
        typer.Option(
            "--funds", metavar="PATH", help="Fund holdings: a file, a folder or a glob. Repeatable."
        ),
    ] = None,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR|URI",
            help="Root of the lakehouse tables: a folder, or (Spark engine) a URI such as "
            "abfss://container@account.dfs.core.windows.net/lake.",
        ),
    ] = "lakehouse",
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="delta|parquet|csv",
            help="Tables are always Delta; parquet or csv also exports silver and gold.",
        ),
    ] = "delta",
    source_tz: Annotated[
        str | None,
        typer.Option(
            "--source-tz",
            metavar="ZONE",
            help="IANA time zone of timestamps without an offset (default: UTC).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="TOML file with expectations, enrichments and settings.",
        ),
    ] = None,
    engine: EngineOpt = "embedded",
    master: MasterOpt = None,
    conf: ConfOpt = None,
) -> None:
    """Ingest new input files into bronze, quarantine, silver and gold.

    Bytes ingested before are never read again (files are known by content), so running
    again on the same files changes nothing; lines appended to a file are read alone. An
    interrupted batch is finished first. `--stocks a.json b.json` takes several paths, so
    an unquoted glob works.
    """
    from digital_finance.cli.run_command import run_pipeline

    if not stocks and not funds:
        fail("give at least one input: --stocks PATH and/or --funds PATH")
    if fmt not in ("delta", "parquet", "csv"):
        fail(f"--format must be delta, parquet or csv, not {fmt!r}")
    settings = spark_settings(engine, master, conf)
    code = run_pipeline(
        stocks or [], funds or [], output, fmt, source_tz, config, engine, master, settings
    )
    raise typer.Exit(code)


@app.command()
def stream(
    source: Annotated[
        str,
        typer.Option("--source", metavar="kafka|mqtt|folder", help="Where the events come from."),
    ],
    output: OutputOpt = "lakehouse",
    trigger: Annotated[
        float | None,
        typer.Option(
            "--trigger",
            metavar="SECONDS",
            help="Commit a micro-batch every SECONDS (default 1, or [stream] trigger_seconds).",
        ),
    ] = None,
    max_batch_records: Annotated[
        int | None,
        typer.Option(
            "--max-batch-records",
            metavar="N",
            help="Commit early once a batch holds N records (default 50,000).",
        ),
    ] = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Take everything available now in batches of up to --max-batch-records "
            "(the trigger does not cut them), commit, exit 0 (for cron and tests).",
        ),
    ] = False,
    topic: Annotated[
        list[str] | None,
        typer.Option(
            "--topic",
            metavar="TOPIC[=DATASET]",
            help="Kafka topic (MQTT: topic filter) and its dataset; repeatable. Default: the "
            "topics stocks and mutual_funds.",
        ),
    ] = None,
    bootstrap_servers: Annotated[
        str | None,
        typer.Option(
            "--bootstrap-servers",
            metavar="HOST:PORT",
            help="Kafka brokers (Event Hubs: NAMESPACE.servicebus.windows.net:9093).",
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            metavar="ID",
            help="Kafka consumer group: processes in one group share the partitions "
            "(--engine spark: names the query's checkpoint; one query per group).",
        ),
    ] = None,
    broker: Annotated[
        str | None, typer.Option("--broker", metavar="HOST:PORT", help="MQTT broker.")
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(
            "--path",
            metavar="DIR|URI",
            help="Landing folder (--source folder): DIR/stocks/ and DIR/mutual_funds/; a "
            "folder or a container URI (az://landing/events).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE", help="TOML file: rules, \\[stream] settings."),
    ] = None,
    source_tz: Annotated[
        str | None,
        typer.Option(
            "--source-tz", metavar="ZONE", help="IANA zone of timestamps without an offset."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            metavar="PORT",
            help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics (Kafka and MQTT).",
        ),
    ] = None,
    engine: EngineOpt = "embedded",
    master: MasterOpt = None,
    conf: ConfOpt = None,
) -> None:
    """Ingest a stream into the lakehouse in micro-batches, exactly once, until stopped.

    Each micro-batch goes through the same pipeline as `run`: bronze, contract, quarantine,
    expectations, silver MERGE, gold. Positions are kept in the tables, so a restart (after
    a crash too) goes on where the tables stand, and any number of streams and runs may
    write one lakehouse. SIGTERM or Ctrl-C commits the batch under way and exits 0.

    With `--engine spark` (Kafka), Spark Structured Streaming reads the topics and each
    micro-batch goes through the Spark engine; either engine continues the other's positions.
    """
    from digital_finance.cli.stream_command import StreamRequest
    from digital_finance.cli.stream_command import stream as run_stream

    settings = spark_settings(engine, master, conf)
    request = StreamRequest(
        source, output, config, trigger, max_batch_records, once, topic or [],
        bootstrap_servers, group, broker, path, source_tz, metrics_port,
        engine, master, settings,
    )  # fmt: skip
    raise typer.Exit(run_stream(request))


@app.command()
def generate(
    out: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Folder to write the data into.")
    ],
    stocks: Annotated[
        int, typer.Option("--stocks", metavar="N", help="Stock records to write.")
    ] = 100_000,
    funds: Annotated[
        int, typer.Option("--funds", metavar="M", help="Fund holding records to write.")
    ] = 10_000,
    seed: Annotated[
        int, typer.Option("--seed", metavar="S", help="Random seed (same seed, same files).")
    ] = 42,
) -> None:
    """Write realistic synthetic data: every accepted form, duplicates, late updates, bad lines."""
    from digital_finance.cli.generate_command import generate_data

    generate_data(out, stocks, funds, seed)


@app.command()
def tables(output: OutputOpt = "lakehouse") -> None:
    """List the tables with their Delta version, row count and last update."""
    from digital_finance.cli.tables_command import list_tables

    list_tables(output)


@app.command()
def query(
    sql: Annotated[
        str,
        typer.Argument(
            metavar="SQL", help='SQL over the tables, e.g. "SELECT * FROM silver.stocks".'
        ),
    ],
    output: OutputOpt = "lakehouse",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", metavar="FILE", help="Write the whole result to .csv, .parquet or .json."
        ),
    ] = None,
    as_of: Annotated[
        int | None,
        typer.Option("--as-of", metavar="VERSION", help="Read every table at this Delta version."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", metavar="N", help="Rows to print as a table.")
    ] = 50,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="table|csv|json",
            help="How to print: a table fitted to the terminal, CSV, or JSON lines.",
        ),
    ] = "table",
) -> None:
    """Run one read-only SELECT over the lakehouse (tables appear as bronze.stocks,
    silver.stocks, gold.stock_fund_holdings, _system.pipeline_runs, …)."""
    from digital_finance.cli.query_command import run_query

    run_query(sql, output, out, as_of, limit, fmt)


@app.command()
def maintain(
    output: OutputOpt = "lakehouse",
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE", help="TOML file with \\[maintenance] settings."),
    ] = None,
    vacuum_hours: Annotated[
        int | None,
        typer.Option(
            "--vacuum-hours",
            metavar="N",
            help="Also delete files no version newer than N hours old needs (ends time travel "
            "before then). Default: no vacuum.",
        ),
    ] = None,
) -> None:
    """Compact small files, checkpoint and clean the log of every table (safe beside writers).

    A stream does this itself every \\[stream] maintain_every_seconds; run it on a schedule
    for lakehouses written by `run` or `stream --once` from cron.
    """
    from digital_finance.cli.maintain_command import maintain_tables

    maintain_tables(output, config, vacuum_hours)


@app.command()
def forget(
    files: Annotated[list[str], typer.Argument(metavar="FILE...", help="Files ingested before.")],
    output: OutputOpt = "lakehouse",
) -> None:
    """Read these files again on the next run, as new (after giving one to the wrong option).

    What the files already put in the tables stays: bronze and quarantine keep the earlier
    read's rows; in silver the records read again compete by event time, and on equal
    times the new read wins.
    """
    from digital_finance.cli.forget_command import forget as forget_files

    forget_files(output, files)


@app.command()
def serve(
    output: OutputOpt = "lakehouse",
    config: Annotated[
        Path | None,
        typer.Option("--config", metavar="FILE", help="TOML file: \\[api] and \\[api.jwt], rules."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option("--host", metavar="HOST", help="Address to listen on (default 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", metavar="PORT", help="Port (default 8080).")
    ] = None,
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir",
            metavar="DIR",
            help="Local folder of the durable log (default ./api-log); one service per folder.",
        ),
    ] = None,
    keys_file: Annotated[
        Path | None,
        typer.Option(
            "--keys-file", metavar="FILE", help="API keys (default api-keys.json; `apikey create`)."
        ),
    ] = None,
) -> None:
    """Serve the ingestion API: authenticated POST /v1/events/{dataset}, table reads, health.

    A request is answered 202 once its records are fsynced to a local log; a child process
    moves the log into the lakehouse in micro-batches, exactly once, beside any other writer.
    Callers need a bearer JWT from the \\[api.jwt] issuer or an API key (docs/API.md).
    """
    from digital_finance.cli.serve_command import ServeRequest
    from digital_finance.cli.serve_command import serve as run_serve

    raise typer.Exit(run_serve(ServeRequest(output, config, host, port, log_dir, keys_file)))


config_app = typer.Typer(help="Check a configuration file.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(apikey_app, name="apikey")


@config_app.command("check")
def config_check(
    file: Annotated[
        Path | None, typer.Argument(metavar="[FILE]", help="The TOML file (none: defaults).")
    ] = None,
) -> None:
    """Check FILE as a run would, then print every setting with where it came from
    (environment, file or default); secrets are named, never shown."""
    from digital_finance.cli.config_command import check

    check(file)


batch_app = typer.Typer(
    help="Repair the lakehouse's batches (see docs/RECOVERY.md).", no_args_is_help=True
)
app.add_typer(batch_app, name="batch")


@batch_app.command("abandon")
def batch_abandon(
    batch_id: Annotated[int, typer.Argument(metavar="N", help="The interrupted batch to give up.")],
    output: OutputOpt = "lakehouse",
) -> None:
    """Give up an interrupted batch: every table goes back to where it was before it.

    Use it when a run says a batch cannot be finished because its files are gone or
    changed. The tables the batch wrote are restored to their version before it (a new
    Delta commit: the old rows stay readable with `query --as-of`), the batch is logged as
    abandoned, and its files count as never read.
    """
    from digital_finance.cli.batch_command import abandon

    abandon(output, batch_id)


_MANY = ("--stocks", "--funds")


def spread_paths(args: list[str]) -> list[str]:
    """`--stocks a b c` becomes `--stocks a --stocks b --stocks c`.

    A shell expands `--stocks data/*.json` into several words; `run` takes no positional
    argument, so every word after `--stocks` or `--funds` up to the next option is a path.
    """
    out: list[str] = []
    taking = False
    for arg in args:
        name, equals, value = arg.partition("=")
        if name in _MANY and equals:  # `--stocks=a b` as `--stocks a b`
            out += [name, value]
            taking = True
            continue
        if arg.startswith("-") and arg != "-":
            taking = arg in _MANY
            out.append(arg)
            continue
        if taking and out and out[-1] not in _MANY:
            out.append(next(o for o in reversed(out) if o in _MANY))
        out.append(arg)
    return out


def main(argv: list[str] | None = None, prog_name: str | None = None) -> None:
    """Console entry point.

    The process ends with `os._exit` once output is flushed: delta-rs and pyarrow can leave
    native threads that abort the interpreter's final clean-up now and then
    (delta-io/delta-rs#2184), which would turn a finished run into exit code 134. Every
    commit is complete before this point. On Databricks the entry point runs inside the
    cluster's own Python process, which must live on: there the exit code is raised instead.
    """
    import os
    import sys

    from digital_finance.cli import errors

    process.keep_freed_memory()
    code = 0
    args = spread_paths(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name=prog_name, standalone_mode=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:  # what escaped the command: said in a line or two
        code = errors.report(exc)
    sys.stdout.flush()
    sys.stderr.flush()
    if "DATABRICKS_RUNTIME_VERSION" in os.environ:
        if code:
            raise SystemExit(code)
        return
    os._exit(code)

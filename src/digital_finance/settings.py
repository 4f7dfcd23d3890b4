"""Typed settings and secrets, read in one fixed order (pydantic-settings).

A setting's value is, first found wins: the environment (`DIGITAL_FINANCE_<KEY>`, sections
joined by `__`: `DIGITAL_FINANCE_ENGINE__MEMORY_LIMIT=2GB`,
`DIGITAL_FINANCE_STORAGE__OPTIONS__ACCOUNT_NAME=acct`), then the TOML file (`--config`), then
the default. Command-line flags win over all of them.

A secret is never written in the file: the file names it, `account_key = { secret = "lake-key" }`,
and its value is, first found wins: the environment (`DIGITAL_FINANCE_SECRET_LAKE_KEY`), a
file named `lake-key` in the secrets folder (`[secrets] folder`, or
`DIGITAL_FINANCE_SECRETS__FOLDER`: mounted Kubernetes or Docker secrets), then Azure Key
Vault (`[secrets] key_vault_url`, with `azure-identity`'s default credential; the `azure`
extra). Secret values are `SecretStr`: never printed, logged or written to a table.

Every key of the file is checked: an unknown or misspelled one is an error that names the
closest valid key, before anything runs. pydantic costs about 0.13 s to import, so a run with
no config file and no `DIGITAL_FINANCE_` settings in its environment skips it and uses the
defaults (a test holds the two equal).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    SecretStr,
    ValidationError,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from digital_finance.lakehouse.maintenance import MaintenancePolicy
from digital_finance.sources.input_limits import InputLimits

ENV_PREFIX = "DIGITAL_FINANCE_"
SECRET_ENV_PREFIX = "DIGITAL_FINANCE_SECRET_"  # noqa: S105 - a variable name, not a secret


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Section):
    """A reference to a secret by name, resolved by `resolve_secret`."""

    secret: str


class EngineSettings(_Section):
    """`[engine]`: knobs of the embedded engine."""

    memory_limit: str = "1GB"
    threads: int | None = None
    silver_write: Literal["auto", "mark", "rewrite", "merge", "rebuild"] = "auto"
    gold_write: Literal["auto", "increment", "whole"] = "auto"
    contract: Literal["auto", "native", "sql"] = "auto"


class InputSettings(_Section):
    """`[input]`: the reader's limits (docs/CONTRACT_RULES.md, "Limits"), in bytes."""

    max_record_bytes: PositiveInt = InputLimits.max_record_bytes
    max_array_bytes: PositiveInt = InputLimits.max_array_bytes
    max_inflated_bytes: PositiveInt = InputLimits.max_inflated_bytes
    max_inflate_ratio: PositiveInt = InputLimits.max_inflate_ratio

    def limits(self) -> InputLimits:
        """The reader's limits these settings give."""
        return InputLimits(
            self.max_record_bytes,
            self.max_array_bytes,
            self.max_inflated_bytes,
            self.max_inflate_ratio,
        )


class StorageSettings(_Section):
    """`[storage]`: options for reaching the lakehouse's storage (delta-rs's keys)."""

    options: dict[str, str | SecretRef] = {}


class SecretsSettings(_Section):
    """`[secrets]`: where named secrets are looked up after the environment."""

    folder: Path | None = None
    key_vault_url: str | None = None


class KafkaSettings(_Section):
    """`[stream.kafka]`: a Kafka broker or Azure Event Hubs' Kafka endpoint (docs/STREAMING.md)."""

    bootstrap_servers: str | None = None
    group: str = "digital-finance"
    # topic -> dataset; the default reads topics named as the datasets
    topics: dict[str, str] = {}
    # Event Hubs: the namespace's connection string (SASL PLAIN, user `$ConnectionString`)
    event_hubs_connection_string: SecretRef | None = None
    # Event Hubs with Entra ID (OAUTHBEARER, azure-identity's default credential)
    entra_id: bool = False
    # any librdkafka setting (`security.protocol`, `ssl.ca.location`, …); secrets allowed
    options: dict[str, str | SecretRef] = {}


class MqttSettings(_Section):
    """`[stream.mqtt]`: an MQTT broker (Mosquitto) or Azure IoT Hub (docs/STREAMING.md)."""

    broker: str | None = None  # host:port
    client_id: str = "digital-finance"
    # topic filter -> dataset
    topics: dict[str, str] = {}
    username: str | None = None
    password: SecretRef | None = None
    tls: bool = False
    ca_file: Path | None = None
    # how many of the last committed messages a redelivery is matched against: at least
    # the broker's limit of unacknowledged messages per client (Mosquitto's
    # max_inflight_messages), which bounds what a broker can deliver again
    redelivery_window: PositiveInt = 20_000


class StreamSettings(_Section):
    """`[stream]`: micro-batches of `digital-finance stream`."""

    trigger_seconds: float = 1.0
    max_batch_records: PositiveInt = 50_000
    # landing folder: a file is taken once it was not modified for this long (a file
    # renamed into place, the better way, is complete at once and waits this long only)
    folder_settle_seconds: float = 1.0
    # how often a stream maintains its tables ([maintenance]), beside its batches; 0: never
    maintain_every_seconds: float = 60.0
    kafka: KafkaSettings = KafkaSettings()
    mqtt: MqttSettings = MqttSettings()


class MaintenanceSettings(_Section):
    """`[maintenance]`: compaction, checkpoints and vacuum (`digital-finance maintain`)."""

    small_file_mib: PositiveInt = 32
    min_small_files: PositiveInt = 16
    target_file_mib: PositiveInt = 128
    checkpoint: bool = True
    vacuum_retention_hours: PositiveInt | None = None

    def policy(self) -> MaintenancePolicy:
        """The maintenance policy these settings give."""
        mib = 1024 * 1024
        return MaintenancePolicy(
            self.small_file_mib * mib,
            self.min_small_files,
            self.target_file_mib * mib,
            self.checkpoint,
            self.vacuum_retention_hours,
        )


# asymmetric algorithms only: `none` and HS* (a shared secret, forgeable by anyone who
# holds the public JWKS if mixed up) are never accepted
JwtAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]


class JwtSettings(_Section):
    """`[api.jwt]`: bearer tokens from an OpenID Connect issuer (Entra ID; docs/API.md)."""

    issuer: str | None = None  # `iss`, exactly; unset: bearer JWTs are not accepted
    audiences: list[str] = []  # accepted `aud` values (the app's client id or App ID URI)
    jwks_url: str | None = None  # the issuer's `jwks_uri`
    algorithms: list[JwtAlgorithm] = ["RS256"]
    tenants: list[str] = []  # accepted `tid` claims; empty: any tenant the issuer names
    leeway_seconds: float = 60.0  # clock skew allowed on `exp` and `nbf`
    jwks_max_age_seconds: float = 3600.0  # keys are fetched again after this long
    jwks_cooldown_seconds: float = 30.0  # an unknown `kid` refetches at most this often


class ApiSettings(_Section):
    """`[api]`: the ingestion service, `digital-finance serve` (docs/API.md)."""

    host: str = "127.0.0.1"
    port: int = 8080
    # the local append-only log a request is durable in before its 202 (a local disk: it
    # is fsynced); one service per log folder
    log_dir: Path = Path("api-log")
    keys_file: Path = Path("api-keys.json")  # API keys, salted hashes only (`apikey create`)
    max_body_bytes: PositiveInt = 8 * 1024 * 1024  # after gzip is inflated, too
    max_records: PositiveInt = 10_000  # per request
    rate_per_second: float = 500.0  # requests per client, refilled continuously
    rate_burst: PositiveInt = 1_000
    request_timeout_seconds: float = 30.0  # reading the body and making it durable
    idempotency_hours: float = 24.0  # how long an `Idempotency-Key` is remembered
    max_page_rows: PositiveInt = 10_000  # rows per page of `GET /v1/tables/...`
    max_record_bytes: PositiveInt = 1024 * 1024  # one record
    max_depth: PositiveInt = 32  # JSON nesting of one record
    max_string_bytes: PositiveInt = 64 * 1024  # one string (or key) of a record
    audit_log: Path | None = None  # one JSON line per write; unset: stderr
    metrics_anonymous: bool = False  # `/metrics` without credentials (else the admin role)
    # addresses of proxies (API Management, a load balancer) whose X-Forwarded-For and
    # X-Forwarded-Proto name the client in the audit log; empty: those headers are ignored
    trusted_proxies: list[str] = []
    # how many steps of `nice` the ingester process runs below the service: on a busy
    # machine the front door answers first and the ingester's batches grow instead, which
    # costs less per record
    ingest_nice: Annotated[int, Field(ge=0, le=19)] = 10
    jwt: JwtSettings = JwtSettings()


class ExpectationEntry(_Section):
    """One `[[expectations]]` table."""

    name: str
    dataset: str
    condition: str
    action: str = "warn"


class Settings(BaseSettings):
    """Every setting of a run; see the module docstring for the order values come from."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    source_tz: str = "UTC"
    engine: EngineSettings = EngineSettings()
    input: InputSettings = InputSettings()
    storage: StorageSettings = StorageSettings()
    secrets: SecretsSettings = SecretsSettings()
    stream: StreamSettings = StreamSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    api: ApiSettings = ApiSettings()
    expectations: list[ExpectationEntry] = []
    rules: dict[str, Any] = {}  # rule name -> action, checked by config.load_config
    enrichments: Any = []  # [[enrichments]] tables, checked by enrichment.load_enrichments

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the file's values arrive as init arguments: the environment wins over them
        return (env_settings, init_settings)


class SettingsError(ValueError):
    """The settings cannot be used; the message names the key and what to write instead."""


def read_settings(data: dict[str, Any], where: str) -> Settings:
    """Validate the file's data (already parsed) under the environment's values."""
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise SettingsError(_explain(exc, where)) from None


def _explain(exc: ValidationError, where: str) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        key = loc[-1] if loc else "?"
        section = _section_name(loc[:-1])
        if error["type"] == "extra_forbidden":
            known = _known_keys(loc[:-1])
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean `{close[0]}`?" if close else f"; known keys: {', '.join(known)}"
            lines.append(f"unknown key `{key}` in {section}{hint}")
        else:
            lines.append(f"{section} `{key}`: {error['msg']}")
    return f"{where}: " + "; ".join(lines)


def _section_name(loc: list[str]) -> str:
    if not loc:
        return "the top level"
    if loc[0] == "expectations" and len(loc) > 1:
        return f"[[expectations]] #{int(loc[1]) + 1}"
    return "[" + ".".join(loc) + "]"


def _known_keys(loc: list[str]) -> list[str]:
    model: Any = Settings
    for part in loc:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        models = [
            a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        model = models[0] if models else None
        if model is None:
            return []
    return sorted(model.model_fields)


def resolve_secret(name: str, secrets: SecretsSettings) -> SecretStr:
    """A named secret: from the environment, the secrets folder, then Key Vault."""
    env = SECRET_ENV_PREFIX + name.upper().replace("-", "_").replace(".", "_")
    if env in os.environ:
        return SecretStr(os.environ[env])
    tried = [f"${env}"]
    folder = secrets.folder or _env_folder()
    if folder is not None:
        path = Path(folder) / name
        if path.is_file():
            return SecretStr(path.read_text(encoding="utf-8").strip())
        tried.append(str(path))
    if secrets.key_vault_url:
        return SecretStr(_from_key_vault(secrets.key_vault_url, name))
    raise SettingsError(
        f"secret {name!r} was not found (looked in {', '.join(tried)}); set one of them, "
        "or [secrets] key_vault_url"
    )


def _env_folder() -> Path | None:
    value = os.environ.get(f"{ENV_PREFIX}SECRETS__FOLDER")
    return Path(value) if value else None


def _from_key_vault(vault_url: str, name: str) -> str:
    try:
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient
    except ImportError as exc:
        raise SettingsError(
            "[secrets] key_vault_url needs azure-identity and azure-keyvault-secrets: "
            "pip install 'digital-finance[azure]'"
        ) from exc
    client = SecretClient(vault_url=vault_url, credential=DefaultAzureCredential())
    value = client.get_secret(name).value
    if value is None:
        raise SettingsError(f"secret {name!r} in {vault_url} has no value")
    return str(value)


def resolved(value: str | SecretRef | None, settings: Settings) -> SecretStr | None:
    """A setting that may name a secret, as a secret value."""
    if value is None:
        return None
    if isinstance(value, SecretRef):
        return resolve_secret(value.secret, settings.secrets)
    return SecretStr(value)


def storage_options(settings: Settings) -> dict[str, SecretStr]:
    """`[storage] options` with every secret reference resolved (values kept secret)."""
    resolved: dict[str, SecretStr] = {}
    for key, value in settings.storage.options.items():
        if isinstance(value, SecretRef):
            resolved[key] = resolve_secret(value.secret, settings.secrets)
        else:
            resolved[key] = SecretStr(value)
    return resolved

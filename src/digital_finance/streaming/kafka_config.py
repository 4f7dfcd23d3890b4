"""librdkafka settings from `[stream.kafka]`: a plain broker, or Azure Event Hubs.

Event Hubs speaks Kafka on `<namespace>.servicebus.windows.net:9093` over TLS, with either
SASL PLAIN (user `$ConnectionString`, the namespace's connection string as the password)
or OAUTHBEARER with an Entra ID token for `https://<namespace>.servicebus.windows.net/.default`
(docs/STREAMING.md). Secret values stay `SecretStr` until librdkafka is handed them; the
settings this module returns are never logged (`describe` shows them without values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from digital_finance.errors import TerminalError

EVENT_HUBS_PORT = 9093
SECRET_KEYS = ("sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret")


class KafkaConfigError(TerminalError):
    """The Kafka settings cannot be used; the message says what to change."""


@dataclass(frozen=True)
class KafkaConnection:
    """What the consumer is built with; `secrets` are kept apart from the plain settings."""

    settings: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)  # key -> SecretStr
    entra_scope: str | None = None  # OAUTHBEARER through azure-identity

    def librdkafka(self) -> dict[str, Any]:
        """The configuration for `confluent_kafka` (secrets revealed here only)."""
        conf: dict[str, Any] = dict(self.settings)
        conf.update({k: v.get_secret_value() for k, v in self.secrets.items()})
        if self.entra_scope is not None:
            conf["oauth_cb"] = _entra_token(self.entra_scope)
        return conf

    def describe(self) -> str:
        """The settings for a log line: keys and plain values; secrets as `***`."""
        shown = [f"{k}={v}" for k, v in sorted(self.settings.items())]
        shown += [f"{k}=***" for k in sorted(self.secrets)]
        if self.entra_scope:
            shown.append(f"entra_id scope={self.entra_scope}")
        return ", ".join(shown)


def connection(
    bootstrap_servers: str | None,
    options: dict[str, Any],
    event_hubs_connection_string: Any = None,
    entra_id: bool = False,
) -> KafkaConnection:
    """The connection settings. `options` are librdkafka keys, values str or SecretStr."""
    from pydantic import SecretStr

    settings: dict[str, str] = {}
    secrets: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, SecretStr):
            secrets[key] = value
        elif key in SECRET_KEYS:
            secrets[key] = SecretStr(str(value))
        else:
            settings[key] = str(value)
    servers = bootstrap_servers
    scope = None
    if event_hubs_connection_string is not None:
        if entra_id:
            raise KafkaConfigError(
                "[stream.kafka] gives both event_hubs_connection_string and entra_id; "
                "choose one way to sign in to Event Hubs"
            )
        text = event_hubs_connection_string.get_secret_value()
        namespace = _namespace(text)
        servers = servers or f"{namespace}:{EVENT_HUBS_PORT}"
        settings.update(
            {"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
             "sasl.username": "$ConnectionString"}
        )  # fmt: skip
        secrets["sasl.password"] = event_hubs_connection_string
    elif entra_id:
        if not servers:
            raise KafkaConfigError(
                "[stream.kafka] entra_id needs bootstrap_servers = "
                '"<namespace>.servicebus.windows.net:9093"'
            )
        host = servers.split(",")[0].rsplit(":", 1)[0]
        scope = f"https://{host}/.default"
        settings.update({"security.protocol": "SASL_SSL", "sasl.mechanisms": "OAUTHBEARER"})
    if not servers:
        raise KafkaConfigError(
            "no Kafka broker: give --bootstrap-servers HOST:PORT, or [stream.kafka] "
            "bootstrap_servers (or event_hubs_connection_string for Azure Event Hubs)"
        )
    settings["bootstrap.servers"] = servers
    return KafkaConnection(settings, secrets, scope)


def _namespace(connection_string: str) -> str:
    found = re.search(r"Endpoint=sb://([^/;]+)", connection_string, re.IGNORECASE)
    if not found:
        raise KafkaConfigError(
            "the Event Hubs connection string has no `Endpoint=sb://<namespace>."
            "servicebus.windows.net/`; copy it from the namespace's Shared access policies"
        )
    return found.group(1)


def _entra_token(scope: str) -> Any:
    def token(_config: str) -> tuple[str, float]:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError as exc:
            raise KafkaConfigError(
                "[stream.kafka] entra_id needs azure-identity: pip install 'digital-finance[azure]'"
            ) from exc
        got = DefaultAzureCredential().get_token(scope)
        return got.token, float(got.expires_on)

    return token

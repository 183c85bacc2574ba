"""Settings: the only code in cqrskit that reads the environment.

Values come from the defaults below (the local services that
``cqrskit services up`` starts), then from the ``[tool.cqrskit]`` table of the
nearest ``pyproject.toml`` (the current directory or one above it), then from ``CQRSKIT_*``
environment variables, then from explicit arguments, each overriding the
one before. A malformed
value fails at start-up with a :class:`~cqrskit.errors.ConfigurationError`
naming the variable.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
)

from cqrskit.errors import ConfigurationError

__all__ = ["ENV_PREFIX", "SECRET_FIELDS", "Settings", "mask"]

ENV_PREFIX = "CQRSKIT_"
#: How many folders above the current one the settings look for a pyproject.toml.
_PYPROJECT_DEPTH = 8
#: ``CQRSKIT_*`` variables that are not settings: the secrets folder, and those of
#: the local services' scripts (``cqrskit/_services/*.sh``).
_OTHER_VARIABLES = {
    f"{ENV_PREFIX}{name}"
    for name in (
        "SECRETS_DIR",
        "SERVICES_DIR",
        "CACHE_DIR",
        "MAVEN_REPO",
        "POSTGRES_PORT",
        "KAFKA_PORT",
        "KAFKA_CONTROLLER_PORT",
        "KAFKA_HEAP",
        "KAFKA_START_TIMEOUT",
        "ES_HEAP",
        "ES_START_TIMEOUT",
    )
}


class Settings(BaseSettings):
    """Where the services are and how patiently to talk to them.

    Build it with :meth:`load`, which turns validation failures into a
    :class:`~cqrskit.errors.ConfigurationError` naming the variable.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        pyproject_toml_table_header=("tool", "cqrskit"),
        # The nearest pyproject.toml: in the current folder or one above it.
        pyproject_toml_depth=_PYPROJECT_DEPTH,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then ``[tool.cqrskit]`` in pyproject.toml."""
        return (
            init_settings,
            env_settings,
            file_secret_settings,
            PyprojectTomlConfigSettingsSource(settings_cls),
        )

    app: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="The application class, as module:Class (e.g. examples.shop:ShopApp).",
    )
    postgres_dsn: str = Field(
        default="postgresql://cqrskit:cqrskit@127.0.0.1:5432/cqrskit",
        repr=False,  # it may hold a password: see masked()
        description="libpq connection string or URL of the event store database "
        "(TLS: sslmode, sslrootcert, sslcert, sslkey).",
    )
    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        description="Comma-separated host:port list of Kafka bootstrap brokers.",
    )
    elasticsearch_url: str = Field(
        default="http://127.0.0.1:9200",
        repr=False,  # it may hold user:password: see elasticsearch_address()
        description="http(s) URL of the Elasticsearch cluster holding read models.",
    )
    elasticsearch_api_key: SecretStr | None = Field(
        default=None, description="API key (the encoded form) to authenticate to Elasticsearch."
    )
    elasticsearch_username: str | None = Field(
        default=None, description="User for HTTP basic authentication to Elasticsearch."
    )
    elasticsearch_password: SecretStr | None = Field(
        default=None, description="Password of elasticsearch_username."
    )
    elasticsearch_ca_certs: str | None = Field(
        default=None, description="CA bundle (PEM file) to verify Elasticsearch's certificate."
    )
    elasticsearch_verify_certs: bool = Field(
        default=True, description="Verify Elasticsearch's TLS certificate (keep it on)."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How clients talk to the brokers."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism, with SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user.")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password.")
    kafka_ssl_ca_location: str | None = Field(
        default=None, description="CA bundle (PEM file) to verify the brokers' certificates."
    )
    kafka_ssl_certificate_location: str | None = Field(
        default=None, description="Client certificate (PEM file) for mutual TLS."
    )
    kafka_ssl_key_location: str | None = Field(
        default=None, description="Client private key (PEM file) for mutual TLS."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of the client private key."
    )
    postgres_schema: str = Field(
        default="public",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="Schema that holds the event store's tables.",
    )
    postgres_keepalives_idle: int = Field(
        default=10,
        ge=1,
        le=7200,
        description="Seconds a PostgreSQL connection may be silent before TCP keepalive probes "
        "start, on both ends (libpq keepalives_idle, server tcp_keepalives_idle).",
    )
    postgres_keepalives_interval: int = Field(
        default=5, ge=1, le=600, description="Seconds between unanswered keepalive probes."
    )
    postgres_keepalives_count: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Unanswered keepalive probes after which a connection counts as lost.",
    )
    postgres_tcp_user_timeout: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="Seconds sent data may stay unacknowledged before a PostgreSQL connection "
        "counts as lost, on both ends (TCP_USER_TIMEOUT).",
    )
    postgres_pool_size: int = Field(
        default=10, ge=1, le=500, description="Connections kept open to the event store."
    )
    command_retries: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Attempts at a command whose aggregate changed under it.",
    )
    topic_layout: Literal["per-aggregate", "per-application"] = Field(
        default="per-aggregate",
        description="One Kafka topic per aggregate type (<prefix>.<type>), or one per application.",
    )
    topic_prefix: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="Start of every topic name; defaults to the application's name.",
    )
    topic_partitions: int = Field(default=6, ge=1, le=10_000)
    topic_replication: int = Field(default=1, ge=1, le=10)
    max_event_bytes: int = Field(
        default=999_000,
        ge=1_000,
        le=100_000_000,
        description="Largest Kafka message (envelope, key and headers) an event may become; "
        "the command bus refuses bigger events. The default is Kafka's default message "
        "limit (1,000,000 bytes) less 1,000 bytes of record framing; raise it only with the "
        "topics' max.message.bytes.",
    )
    relay_refused_retry_interval: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds between the relay's attempts at a message the broker refuses "
        "as too large.",
    )
    relay_page_size: int = Field(
        default=2000, ge=1, le=100_000, description="Outbox rows read per query."
    )
    relay_pages_in_flight: int = Field(
        default=8, ge=1, le=1000, description="Pages produced before the oldest must be acked."
    )
    relay_compression: Literal["lz4", "zstd", "snappy", "gzip", "none"] = "lz4"
    relay_seal_key: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="Secret the relay seals its messages with and workers check; the same "
        "value in both. Unset: a built-in key, which tells the relay's messages from other "
        "producers' but not from a forger who knows it.",
    )
    relay_drain_timeout: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds to wait for acks when stopping."
    )
    relay_lease: float = Field(
        default=10.0,
        ge=1,
        le=600,
        description=(
            "Seconds a relay leader may stay silent (paused, partitioned) before a standby "
            "ends its PostgreSQL session and takes over; a leader that cannot renew its "
            "lease within it stops publishing by itself."
        ),
    )
    index_prefix: str = Field(
        default="",
        pattern=r"^[a-z0-9._-]{0,100}$",
        description="Start of every Elasticsearch index and alias name.",
    )
    projections: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*$",
        description="Module (or package) that defines the projections, e.g. projections.",
    )
    sagas: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][\w.]*$",
        description="Module (or package) that defines the process managers (sagas).",
    )
    kafka_session_timeout: float = Field(
        default=10.0,
        ge=6,
        le=300,
        description="Seconds before a consumer group gives a silent member's partitions to "
        "another (a killed worker's partitions move after this).",
    )
    kafka_rejoin_timeout: float = Field(
        default=60.0,
        ge=10,
        le=3600,
        description="Seconds a worker's or saga runner's consumer may stay out of a steady group "
        "while the cluster answers before it is replaced by a new one (decision 0015).",
    )
    kafka_consumer_queue_kbytes: int = Field(
        default=16_384,
        ge=1024,
        le=2_097_151,
        description="KiB of messages a worker or saga runner prefetches from Kafka "
        "(librdkafka's queued.max.messages.kbytes; its own default of 65536 costs about "
        "170 MB of memory on a backlog).",
    )
    projection_batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="Events applied per bulk request."
    )
    rebuild_batch_size: int = Field(
        default=20_000,
        ge=1,
        le=100_000,
        description="Events a rebuild applies per batch. Each document is read and written "
        "once per batch, so larger batches fold more events per write; memory grows with "
        "the batch (bulk requests are split by size, whatever the batch).",
    )
    projection_retries: int = Field(
        default=3, ge=1, le=100, description="Attempts at an event before it is dead-lettered."
    )
    read_wait: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="Seconds a query with min_position waits for the read model.",
    )
    query_max_reads: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="Reads of one read model in flight at a time, per query bus; past it a "
        "query is refused at once (503 with Retry-After) instead of queueing.",
    )
    query_max_waits: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Read-your-writes waits on one read model at a time, per query bus; "
        "past it a waiting query is refused at once, and plain queries are not held up.",
    )
    query_breaker_window: int = Field(
        default=20, ge=1, le=10_000, description="Latest reads of a read model its breaker judges."
    )
    query_breaker_min_calls: int = Field(
        default=5, ge=1, le=10_000, description="Reads in the window before the breaker judges."
    )
    query_breaker_failure_rate: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of failed reads in the window that opens a read model's breaker.",
    )
    query_breaker_open_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="Seconds an open breaker refuses reads before it lets a few try again.",
    )
    query_breaker_half_open_calls: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="Trial reads a half-open breaker lets through; all must succeed to close.",
    )
    command_threads: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Threads of the async command bus: commands dispatched from an event "
        "loop at a time (psycopg is blocking; the loop never is).",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve Prometheus metrics of the relay or workers on this port (0: any free).",
    )
    metrics_address: str = Field(
        default="0.0.0.0", description="Address the metrics endpoint listens on."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="Log lines as JSON, as text, or auto: text on a terminal, JSON otherwise.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="The least severe log lines written."
    )
    connect_timeout: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds to wait for a service to answer before giving up.",
    )

    @classmethod
    def load(cls, **overrides: object) -> Settings:
        """Read defaults, then the environment, then ``overrides``.

        Raises:
            ConfigurationError: a value is malformed, or a ``CQRSKIT_*`` variable
                names no setting (a misspelling would be ignored otherwise);
                names the variable.
        """
        cls._refuse_unknown_variables()
        secrets_dir = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR")
        values: dict[str, Any] = dict(overrides)  # validated by the model itself
        try:
            if secrets_dir:
                return cls(_secrets_dir=secrets_dir, **values)
            return cls(**values)
        except tomllib.TOMLDecodeError as exc:
            where = _nearest_pyproject() or "pyproject.toml"
            raise ConfigurationError(str(where), None, f"not valid TOML: {exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "?"
            where = variable_for(field)
            if field not in overrides and where not in os.environ:
                where = f"pyproject.toml [tool.cqrskit] {field} (or {where})"
            value = first.get("input")
            if field in SECRET_FIELDS and value is not None:
                value = mask(str(value)) if field in _ADDRESS_FIELDS else "***"
            raise ConfigurationError(where, value, first["msg"]) from exc

    @classmethod
    def _refuse_unknown_variables(cls) -> None:
        known = {variable_for(name) for name in cls.model_fields} | _OTHER_VARIABLES
        for variable in sorted(os.environ):
            if variable.startswith(ENV_PREFIX) and variable not in known:
                close = difflib.get_close_matches(variable, sorted(known), n=1, cutoff=0.75)
                hint = f"did you mean {close[0]}?" if close else "see `cqrskit --help` or the docs"
                raise ConfigurationError(variable, os.environ[variable], f"no such setting; {hint}")

    @field_validator("postgres_dsn")
    @classmethod
    def _check_dsn(cls, value: str) -> str:
        try:
            conninfo_to_dict(value)
        except Exception as exc:
            raise ValueError(f"not a PostgreSQL connection string ({exc})") from exc
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        brokers = [b.strip() for b in value.split(",") if b.strip()]
        if not brokers:
            raise ValueError("expected host:port[,host:port...]")
        for broker in brokers:
            host, sep, port = broker.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{broker!r} is not host:port")
        return ",".join(brokers)

    @field_validator("elasticsearch_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        try:
            parts.port  # noqa: B018 - urlsplit validates the port lazily
        except ValueError as exc:
            raise ValueError(str(exc)) from exc
        return value.rstrip("/")

    def masked(self) -> dict[str, Any]:
        """Every setting, with passwords, keys and credentials in URLs masked."""
        shown: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                shown[name] = "***" if value.get_secret_value() else ""
            elif name in SECRET_FIELDS and isinstance(value, str):
                shown[name] = mask(value)
            else:
                shown[name] = value
        return shown

    def elasticsearch_address(self) -> str:
        """The Elasticsearch URL without credentials."""
        return mask(self.elasticsearch_url)

    def postgres_address(self) -> str:
        """host:port/dbname of the event store, without the password."""
        params = conninfo_to_dict(self.postgres_dsn)
        host = params.get("host") or "localhost"
        port = params.get("port") or 5432
        return f"{host}:{port}/{params.get('dbname', '')}"


#: Settings whose values may carry credentials; never printed as they are.
SECRET_FIELDS = frozenset(
    {
        "postgres_dsn",
        "elasticsearch_url",
        "elasticsearch_api_key",
        "elasticsearch_password",
        "kafka_sasl_password",
        "kafka_ssl_key_password",
        "relay_seal_key",
    }
)


_ADDRESS_FIELDS = frozenset({"postgres_dsn", "elasticsearch_url"})


def mask(value: str) -> str:
    """``value`` with any password hidden: URL user info, or ``password=`` in a DSN."""
    parts = urlsplit(value)
    if parts.scheme and parts.netloc and "@" in parts.netloc:
        userinfo, _, host = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        masked = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
        return urlunsplit(parts._replace(netloc=masked))
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", value)


def _nearest_pyproject() -> Path | None:
    """The pyproject.toml settings are read from, as pydantic-settings looks for it."""
    here = Path.cwd()
    for folder in [here, *here.parents][: _PYPROJECT_DEPTH + 1]:
        if (folder / "pyproject.toml").is_file():
            return folder / "pyproject.toml"
    return None


def variable_for(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"

"""One settings object, read from the environment (names as in the wire contract)."""

from __future__ import annotations

import socket
import ssl
from datetime import timedelta
from functools import lru_cache
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from process_manager import DEFAULT_TIMEOUTS, State, Timeouts

PROCESS_TABLE = "processes"
"""The Faust table of the process manager (it names the table's changelog topic)."""


class Settings(BaseSettings):
    """Every knob of the system, with defaults that work on a developer machine."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    database_url: str = "postgresql://orderflow:orderflow@127.0.0.1:5432/orderflow"

    topic_prefix: str = ""
    topic_partitions: int = Field(default=8, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)

    app_id: str = "orderflow"
    # Stable per worker across restarts (it names transactional producers, so a restarted
    # worker fences its own unfinished transaction at once). Defaults to host and web port.
    worker_id: str | None = None
    app_version: int = 1
    data_dir: str = ".data"
    web_port: int = 6066
    web_bind: str = "127.0.0.1"
    # How other workers reach this one (table_route proxies there); defaults to the bind address.
    web_host: str | None = None
    operator_token: str | None = None

    # Process timeouts in seconds per state, over the process manager's defaults:
    # PROCESS_TIMEOUTS='{"AwaitingPayment": 30}'. PROCESS_TIMEOUT_ALL_S sets every state.
    process_timeouts: dict[str, float] = Field(default_factory=dict)
    process_timeout_all_s: float | None = None
    timeout_check_interval_s: float = 0.5
    payment_settlement_delay_s: float = 5.0
    # The modules' command handlers run in every worker unless this is false; then they run in
    # their own processes (python -m streams.modules.runner), which take them off the worker's GIL.
    worker_runs_modules: bool = True
    # A module loop silent this long is stuck for good: the worker exits for its supervisor to
    # restart it (streams/observability/liveness.py). Above every client call's own timeout (30 s).
    stall_exit_after_s: float = Field(default=90.0, gt=30.0)

    log_format: str = Field(default="console", pattern="^(json|console)$")
    log_level: str = "INFO"

    # Kafka security, passed through to both Faust (aiokafka) and confluent-kafka.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def stable_worker_id(self) -> str:
        return self.worker_id or f"{socket.gethostname()}-{self.web_port}"

    def canonical_url(self) -> str:
        host = self.web_host or (self.web_bind if self.web_bind != "0.0.0.0" else socket.getfqdn())
        return f"http://{host}:{self.web_port}"

    def faust_app_id(self, version: int | None = None) -> str:
        """The id Faust derives from app id and version (default: ``app_version``): its group
        id and its tables' changelog prefix.

        Faust's ``id_format`` default is ``{id}-v{self.version}``, applied for version > 1 only
        (faust/types/settings/settings.py).
        """
        version = self.app_version if version is None else version
        return self.app_id if version <= 1 else f"{self.app_id}-v{version}"

    def process_changelog_topic(self, version: int | None = None) -> str:
        """The process table's changelog: ``<faust app id>-processes-changelog``, no prefix
        (faust/tables/base.py)."""
        return f"{self.faust_app_id(version)}-{PROCESS_TABLE}-changelog"

    def topic(self, name: str) -> str:
        """The full name of a contract topic, with the configured prefix."""
        return f"{self.topic_prefix}{name}"

    def timeouts(self) -> Timeouts:
        """The process timeouts: the configured ones over ``DEFAULT_TIMEOUTS``.

        The worker runs with them; replay, verify and check fold with them.
        """
        seconds = dict.fromkeys(State, self.process_timeout_all_s) | {
            State(state): s for state, s in self.process_timeouts.items()
        }
        overrides = {state: timedelta(seconds=s) for state, s in seconds.items() if s is not None}
        return {**DEFAULT_TIMEOUTS, **overrides}

    def confluent_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka configuration for confluent-kafka clients."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_cafile,
            "ssl.certificate.location": self.ssl_certfile,
            "ssl.key.location": self.ssl_keyfile,
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        config.update(extra)
        return config

    def member_config(self, group: str, **extra: Any) -> dict[str, Any]:
        """A consumer of ``group`` that commits by itself, reads committed records only, and
        is a static member: a restarted worker takes its partitions back at once, and a killed
        one's move to the others after 10 s, not librdkafka's default 45 s."""
        return self.confluent_config(
            **{
                "group.id": group,
                "group.instance.id": f"{group}-{self.stable_worker_id()}",
                "session.timeout.ms": 10000,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **extra,
            }
        )

    def producer_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka configuration for confluent-kafka producers."""
        # The Java clients' and aiokafka's (Faust's) partitioner: librdkafka's default (CRC32)
        # would put an order's messages on other partitions than Faust does.
        return self.confluent_config(**{"partitioner": "murmur2_random", **extra})

    def faust_credentials(self) -> Any:
        """faust.auth credentials matching the security settings, or None for PLAINTEXT."""
        import faust.auth

        if self.security_protocol == "PLAINTEXT":
            return None
        context = None
        if self.security_protocol.endswith("SSL"):
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        if self.security_protocol.startswith("SASL"):
            return faust.auth.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=self.sasl_mechanism or "PLAIN",
                ssl_context=context,
            )
        return faust.auth.SSLCredentials(context)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

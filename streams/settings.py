"""One settings object, read from the environment (names as in the wire contract)."""

from __future__ import annotations

import socket
import ssl
from datetime import timedelta
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from process_manager import DEFAULT_TIMEOUTS, State, Timeouts

PROCESS_TABLE = "processes"
"""The Faust table of the process manager (it names the table's changelog topic)."""

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# The mechanisms both aiokafka and librdkafka take from a username and a password alone.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ANY_ADDRESS = ("0.0.0.0", "::", "")
LOCAL_OR_ANY = (*ANY_ADDRESS, "127.0.0.1", "localhost", "::1")


def client_id(config: dict[str, Any], app_id: str) -> str:
    """The most specific name a client's configuration holds: its transactional id, its static
    member id, its group, else the application's id."""
    for key in ("transactional.id", "group.instance.id", "group.id"):
        if config.get(key):
            return str(config[key])
    return app_id


class Settings(BaseSettings):
    """Every knob of the system, with defaults that work on a developer machine."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    database_url: str = "postgresql://orderflow:orderflow@127.0.0.1:5432/orderflow"

    topic_prefix: str = ""
    topic_partitions: int = Field(default=8, ge=1)
    # None: 3 on a cluster of three brokers or more, else 1 (streams.kafka.topics.durability).
    topic_replication_factor: int | None = Field(default=None, ge=1)
    # The longest a confluent-kafka consumer's fetch waits at the broker for records. One
    # worker paced at 100 orders/s, p50: 516 ms at librdkafka's 500, 327 at 100, 336-415 at 20.
    # Two idle workers with their module runners and the broker used 10-11 % of a core at 500,
    # 14 % at 100 and 23 % at 20.
    fetch_wait_max_ms: int = Field(default=100, ge=1)

    app_id: str = "orderflow"
    # process: the stateful process manager (its table, timeouts, operators). saga: the
    # article's stateless saga instead (process_manager.saga), with no table and no timer.
    coordination: Literal["process", "saga"] = "process"
    # How inputs reach the process manager. loop: a confluent-kafka transactional loop in a
    # thread of the Faust worker, a batch at a time (streams/process/loop.py). agent: a Faust
    # agent, an event at a time. The same table either way. The saga runs on the agent only,
    # which is then the default.
    hot_path: Literal["agent", "loop"] = "loop"
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
    ssl_key_password: str | None = None

    @field_validator("security_protocol", "sasl_mechanism")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else None  # SASL_MECHANISM= is no mechanism

    @model_validator(mode="before")
    @classmethod
    def _saga_on_the_agent(cls, data: Any) -> Any:
        if isinstance(data, dict) and str(data.get("coordination", "")).lower() == "saga":
            return {"hot_path": "agent", **data}
        return data

    @model_validator(mode="after")
    def _hot_path_agrees(self) -> Settings:
        if self.hot_path == "loop" and self.coordination == "saga":
            raise ValueError("HOT_PATH=loop needs COORDINATION=process: the saga keeps no table")
        return self

    @model_validator(mode="after")
    def _security_agrees(self) -> Settings:
        """Refuse what Faust (aiokafka) and librdkafka would read differently.

        Without a mechanism Faust takes PLAIN and librdkafka GSSAPI, so the two halves of a
        worker would authenticate differently: a SASL protocol needs SASL_MECHANISM.
        """
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(
                f"SECURITY_PROTOCOL={self.security_protocol} is not one of "
                + ", ".join(SECURITY_PROTOCOLS)
            )
        if self.security_protocol.startswith("SASL_"):
            if self.sasl_mechanism is None:
                raise ValueError(
                    f"SECURITY_PROTOCOL={self.security_protocol} needs SASL_MECHANISM (one of "
                    + ", ".join(SASL_MECHANISMS)
                    + "): Faust would default to PLAIN and librdkafka to GSSAPI"
                )
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ValueError(
                    f"SASL_MECHANISM={self.sasl_mechanism} is not one of "
                    + ", ".join(SASL_MECHANISMS)
                )
            if not (self.sasl_username and self.sasl_password):
                raise ValueError(
                    f"SASL_MECHANISM={self.sasl_mechanism} needs SASL_USERNAME and SASL_PASSWORD"
                )
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("SSL_KEYFILE needs SSL_CERTFILE (the certificate of that key)")
        if self.ssl_key_password and not (self.ssl_keyfile or self.ssl_certfile):
            raise ValueError("SSL_KEY_PASSWORD needs SSL_KEYFILE (or a key in SSL_CERTFILE)")
        return self

    def stable_worker_id(self) -> str:
        """WORKER_ID, else the host this worker is reached at and its web port.

        Where that host is only this machine's loopback or any address, the machine's name
        stands for it. Network namespaces share the machine's name, so two workers in
        namespaces of their own on the same port are told apart by their addresses.
        """
        if self.worker_id:
            return self.worker_id
        host = self.web_host_name()
        if not self.web_host and self.web_bind in LOCAL_OR_ANY:
            host = socket.gethostname()
        return f"{host}-{self.web_port}"

    def web_host_name(self) -> str:
        """The host other workers reach this one at: WEB_HOST, else the bind address, else
        (bound to any address) this machine's name."""
        if self.web_host:
            return self.web_host
        return self.web_bind if self.web_bind not in ANY_ADDRESS else socket.getfqdn()

    def canonical_url(self) -> str:
        return f"http://{self.web_host_name()}:{self.web_port}"

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
            "ssl.key.password": self.ssl_key_password,
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        config.update(extra)
        # librdkafka's default client.id is "rdkafka" for every client, so the broker's request
        # log and per-client metrics could not tell the loops apart.
        config.setdefault("client.id", client_id(config, self.app_id))
        return config

    def consumer_config(self, group: str, **extra: Any) -> dict[str, Any]:
        """A consumer of ``group`` that commits by itself and reads committed records only."""
        return self.confluent_config(
            **{
                "group.id": group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": self.fetch_wait_max_ms,
                **extra,
            }
        )

    def faust_member_id(self, group: str) -> str:
        """The Faust worker's static member id in ``group``, one per subscription: the loop's
        worker reads the table's changelog, the agent's the inputs too, the saga's the events.

        A static member that rejoins a stable group under its old id gets its old assignment
        back, whatever it subscribes to now (KAFKA-12759): a saga worker started within 10 s of
        a process worker of the same id was handed changelog partitions and stopped."""
        kind = "saga" if self.coordination == "saga" else self.hot_path
        return self.member_id(group) + ("" if kind == "loop" else f"-{kind}")

    def member_id(self, group: str) -> str:
        """This worker's static member id in ``group``."""
        return f"{group}-{self.stable_worker_id()}"

    def member_config(self, group: str, **extra: Any) -> dict[str, Any]:
        """A ``consumer_config`` that subscribes as a static member: a restarted worker takes
        its partitions back at once, and a killed one's move to the others after 10 s, not
        librdkafka's default 45 s."""
        return self.consumer_config(
            group,
            **{
                "group.instance.id": self.member_id(group),
                "session.timeout.ms": 10000,
                **extra,
            },
        )

    def producer_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka configuration for confluent-kafka producers."""
        # The Java clients' and aiokafka's (Faust's) partitioner: librdkafka's default (CRC32)
        # would put an order's messages on other partitions than Faust does.
        # acks=all is librdkafka's default too; said here so that no producer depends on it.
        base: dict[str, Any] = {"partitioner": "murmur2_random", "acks": "all"}
        if "transactional.id" in extra:
            # Until the previous transaction's markers are written, the coordinator answers the
            # next one's AddOffsets/AddPartitions with CONCURRENT_TRANSACTIONS, and librdkafka
            # retries after retry.backoff.ms: at its default of 100 ms, back-to-back transactions
            # took 107 ms each here, 14 ms at 5 ms (the Java client waits 20 ms, KAFKA-5477).
            # Other retries still back off exponentially up to retry.backoff.max.ms.
            base["retry.backoff.ms"] = 5
        return self.confluent_config(**{**base, **extra})

    def faust_credentials(self) -> Any:
        """faust.auth credentials matching the security settings, or None for PLAINTEXT."""
        import faust.auth

        if self.security_protocol == "PLAINTEXT":
            return None
        context = None
        if self.security_protocol.endswith("SSL"):
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                context.load_cert_chain(
                    self.ssl_certfile, self.ssl_keyfile, password=self.ssl_key_password
                )
        if self.security_protocol.startswith("SASL"):
            return faust.auth.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=self.sasl_mechanism,
                ssl_context=context,
            )
        return faust.auth.SSLCredentials(context)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of the environment; a bad one ends the program with a line that names it,
    not a traceback."""
    try:
        return Settings()
    except ValidationError as error:
        raise SystemExit(f"settings: {settings_problems(error)}") from None


def settings_problems(error: ValidationError) -> str:
    """Each refused setting as its variable's name and why, on one line."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']} (got {e['input']!r})"
        if e["loc"]
        else e["msg"].removeprefix("Value error, ")
        for e in error.errors()
    )

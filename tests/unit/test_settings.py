"""Kafka security settings read alike by Faust (aiokafka) and librdkafka; durability by size."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import pytest
from faust.cli.worker import worker as faust_worker_command
from pydantic import ValidationError

from streams.kafka.admin import cluster_size
from streams.kafka.app import create_app
from streams.kafka.topics import durability
from streams.settings import Settings, get_settings

SCRAM = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username": "orderflow",
    "sasl_password": "secret",
}


def test_a_sasl_protocol_without_a_mechanism_is_refused() -> None:
    # Faust would take PLAIN and librdkafka GSSAPI: neither is picked for the other
    for protocol in ("SASL_SSL", "SASL_PLAINTEXT"):
        with pytest.raises(ValidationError, match="needs SASL_MECHANISM"):
            Settings(security_protocol=protocol, sasl_username="u", sasl_password="p")


def test_an_empty_mechanism_from_the_environment_counts_as_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SASL_MECHANISM", "")
    with pytest.raises(ValidationError, match="needs SASL_MECHANISM"):
        Settings()


def test_unknown_protocols_and_mechanisms_are_refused() -> None:
    with pytest.raises(ValidationError, match="SECURITY_PROTOCOL=TLS is not one of"):
        Settings(security_protocol="TLS")
    with pytest.raises(ValidationError, match="SASL_MECHANISM=GSSAPI is not one of"):
        Settings(**{**SCRAM, "sasl_mechanism": "GSSAPI"})


def test_sasl_needs_a_username_and_a_password() -> None:
    with pytest.raises(ValidationError, match="needs SASL_USERNAME and SASL_PASSWORD"):
        Settings(**{**SCRAM, "sasl_password": None})


def test_a_key_needs_its_certificate_and_a_key_password_needs_a_key() -> None:
    with pytest.raises(ValidationError, match="SSL_KEYFILE needs SSL_CERTFILE"):
        Settings(security_protocol="SSL", ssl_keyfile="client.key")
    with pytest.raises(ValidationError, match="SSL_KEY_PASSWORD needs SSL_KEYFILE"):
        Settings(security_protocol="SSL", ssl_key_password="pw")


def test_both_clients_get_the_same_mechanism_credentials_and_key_password() -> None:
    settings = Settings(
        **{**SCRAM, "security_protocol": "sasl_ssl", "sasl_mechanism": "scram-sha-512"},
        ssl_cafile="ca.pem",
        ssl_certfile="client.crt",
        ssl_keyfile="client.key",
        ssl_key_password="pw",
    )
    config = settings.confluent_config()
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("orderflow", "secret")
    assert config["ssl.key.password"] == "pw"
    assert config["ssl.key.location"] == "client.key"


def test_plaintext_needs_nothing_and_sends_no_security_options() -> None:
    config = Settings().confluent_config()
    assert config["security.protocol"] == "PLAINTEXT"
    assert not [key for key in config if key.startswith(("sasl.", "ssl."))]
    assert Settings().faust_credentials() is None


def test_every_confluent_producer_waits_for_all_in_sync_replicas() -> None:
    assert Settings().producer_config()["acks"] == "all"
    assert Settings().producer_config(**{"transactional.id": "t"})["acks"] == "all"


def test_a_transactional_producer_retries_a_busy_coordinator_after_5_ms_not_100() -> None:
    given = Settings()
    transactional = given.producer_config(**{"transactional.id": "t"})
    overridden = given.producer_config(**{"transactional.id": "t", "retry.backoff.ms": 50})
    assert transactional["retry.backoff.ms"] == 5
    assert overridden["retry.backoff.ms"] == 50
    assert "retry.backoff.ms" not in given.producer_config()


def test_every_confluent_client_names_itself_by_its_most_specific_id() -> None:
    given = Settings(app_id="shop")
    assert (
        given.producer_config(**{"transactional.id": "shop-loop-w1"})["client.id"] == "shop-loop-w1"
    )
    assert (
        given.member_config("shop-aggregates")["client.id"]
        == given.member_config("shop-aggregates")["group.instance.id"]
    )
    assert given.consumer_config("shop-replay")["client.id"] == "shop-replay"
    assert given.producer_config()["client.id"] == "shop"
    assert given.confluent_config(**{"client.id": "mine"})["client.id"] == "mine"


def test_a_faust_worker_is_a_static_member_of_its_own_per_subscription() -> None:
    # Given one worker id under the loop, the agent and the saga
    loop = Settings(worker_id="w1")
    agent = Settings(worker_id="w1", hot_path="agent")
    saga = Settings(worker_id="w1", coordination="saga")

    # When each names its member of the group "shop"
    ids = [s.faust_member_id("shop") for s in (loop, agent, saga)]

    # Then the default keeps the id it had, and the others differ from it and each other
    assert ids == ["shop-w1", "shop-w1-agent", "shop-w1-saga"]


def test_a_consumer_fetch_waits_100_ms_at_most_unless_configured_otherwise() -> None:
    assert Settings().consumer_config("g")["fetch.wait.max.ms"] == 100
    assert Settings().member_config("g")["fetch.wait.max.ms"] == 100
    assert Settings(fetch_wait_max_ms=20).member_config("g")["fetch.wait.max.ms"] == 20


def test_three_brokers_or_more_keep_three_copies_two_in_sync_and_no_unclean_leader() -> None:
    for brokers in (3, 5):
        durable = durability(brokers)
        assert durable.replication_factor == 3
        assert durable.config == {
            "min.insync.replicas": "2",
            "unclean.leader.election.enable": "false",
        }


def test_fewer_brokers_keep_the_single_node_values() -> None:
    for brokers in (1, 2):
        assert durability(brokers).replication_factor == 1
        assert durability(brokers).config == {}


def test_a_configured_replication_factor_wins_over_the_cluster_size() -> None:
    assert durability(5, replication_factor=5).replication_factor == 5
    assert durability(1, replication_factor=1).config == {}


def _metadata(brokers: int, offsets_copies: int | None) -> SimpleNamespace:
    topics = {}
    if offsets_copies is not None:
        partition = SimpleNamespace(replicas=list(range(offsets_copies)))
        topics["__consumer_offsets"] = SimpleNamespace(partitions={0: partition})
    return SimpleNamespace(brokers=dict.fromkeys(range(brokers)), topics=topics)


def test_a_broker_that_is_down_still_counts_in_the_cluster_size() -> None:
    # Given three brokers, one of them down: the metadata lists two, the offsets topic has three
    assert cluster_size(_metadata(2, 3)) == 3
    # A cluster without an offsets topic yet counts the brokers it lists
    assert cluster_size(_metadata(3, None)) == 3
    assert cluster_size(_metadata(1, 1)) == 1


# Where other workers reach this one


def start_as_faust_worker_does(app: Any, settings: Settings) -> None:
    """What `faust worker --web-port P --web-bind B` does to the app's settings."""
    command = faust_worker_command.__new__(faust_worker_command)
    command.app = app
    command._init_worker_options(
        with_web=True,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_host=None,
        web_transport=None,
    )


@pytest.mark.filterwarnings("ignore::faust.exceptions.AlreadyConfiguredWarning")
def test_faust_worker_with_a_web_port_announces_the_bind_address_not_the_machine() -> None:
    # Given a worker bound to the address of its own network namespace
    settings = Settings(web_bind="10.79.0.21", web_port=6066)
    app = create_app(settings, app_id="announce")

    # When `faust worker --web-port` rebuilds canonical_url from web_host and web_port
    start_as_faust_worker_does(app, settings)

    # Then the assignor announces that address, which the other workers can reach
    assert str(app.conf.canonical_url) == "http://10.79.0.21:6066"


def test_web_host_names_the_worker_for_others_over_the_bind_address() -> None:
    settings = Settings(web_bind="0.0.0.0", web_host="worker-1", web_port=6066)
    assert settings.canonical_url() == "http://worker-1:6066"
    assert settings.stable_worker_id() == "worker-1-6066"


def test_two_workers_in_namespaces_on_one_port_have_distinct_ids() -> None:
    # Namespaces share the machine's name: the bind address tells them apart
    ids = {Settings(web_bind=f"10.79.0.2{k}", web_port=6066).stable_worker_id() for k in (1, 2)}
    assert ids == {"10.79.0.21-6066", "10.79.0.22-6066"}


def test_a_worker_on_loopback_or_any_address_is_named_after_the_machine() -> None:
    for bind in ("127.0.0.1", "0.0.0.0"):
        worker_id = Settings(web_bind=bind, web_port=6066).stable_worker_id()
        assert worker_id == f"{socket.gethostname()}-6066"


def test_a_bad_setting_ends_the_program_with_one_line_that_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a partition count of 0 and an unknown log format
    monkeypatch.setenv("TOPIC_PARTITIONS", "0")
    monkeypatch.setenv("LOG_FORMAT", "xml")

    # When the settings are read (not the ones an earlier test cached)
    get_settings.cache_clear()
    with pytest.raises(SystemExit) as ended:
        get_settings()

    # Then one line names each, without a traceback
    message = str(ended.value.code)
    assert message.startswith("settings: TOPIC_PARTITIONS: ")
    assert "(got '0')" in message and "; LOG_FORMAT: " in message
    assert "\n" not in message


def test_the_process_manager_runs_on_the_loop_and_the_saga_on_the_agent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().hot_path == "loop"
    assert Settings(coordination="saga").hot_path == "agent"
    monkeypatch.setenv("COORDINATION", "saga")
    assert Settings().hot_path == "agent"


def test_the_saga_on_the_loop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # the loop writes the process table, which the saga does not keep
    with pytest.raises(ValidationError, match="HOT_PATH=loop needs COORDINATION=process"):
        Settings(coordination="saga", hot_path="loop")
    monkeypatch.setenv("COORDINATION", "saga")
    monkeypatch.setenv("HOT_PATH", "loop")
    with pytest.raises(ValidationError, match="HOT_PATH=loop needs COORDINATION=process"):
        Settings()

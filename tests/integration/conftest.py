"""Integration fixtures. Services must be up (`make up`): a missing one fails, never skips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.kafka.admin import ping
from streams.settings import Settings, get_settings
from tests.integration.harness import Service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def settings() -> Settings:
    settings = get_settings()
    assert ping(settings.confluent_config(), timeout=10), (
        f"Kafka is not answering at {settings.kafka_bootstrap_servers}: run `make up`"
    )
    return settings


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[Service]]:
    """Services registered here are stopped after the test, whatever its outcome."""
    started: list[Service] = []
    yield started
    for service in started:
        if service.running():
            service.stop()

"""Unit tests see the settings' defaults, whatever the shell that runs them exports."""

from __future__ import annotations

import pytest

from streams.settings import Settings


@pytest.fixture(autouse=True)
def default_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)

"""Every consumer group id of the project, and what each member group consumes.

This module owns the group ids; everything else asks it (the lag metric too). Member groups
commit offsets and are what ``consumer_lag`` reports; readers (replay and verify, the lag
probe, a command processor's state rebuild) only assign partitions and commit nothing.
"""

from __future__ import annotations

from streams.kafka.topics import AGGREGATES, MODULES, PROCESS_INPUTS, READ_MODEL_INPUTS, commands_of
from streams.settings import Settings

# Member groups


def process_manager(settings: Settings, version: int | None = None) -> str:
    """The Faust worker's group: Faust's app id (``<app_id>``, then ``<app_id>-v<N>``)."""
    return settings.faust_app_id(version)


def aggregates(settings: Settings) -> str:
    """The group of the event-sourced modules' command handler (``AGGREGATES``), one loop for
    all three (its transactional ids start with it)."""
    return f"{settings.app_id}-aggregates"


def module(settings: Settings, name: str) -> str:
    """The group of module ``name``'s own command handler: the shipment module's; before the
    event-sourced modules shared one loop, each of theirs (``streams.modules.offsets``)."""
    return f"{settings.app_id}-{name}"


def read_model(settings: Settings) -> str:
    """The read model projector's group."""
    return f"{settings.app_id}-read-model"


def members(settings: Settings) -> dict[str, list[str]]:
    """Every member group and the topics it consumes (full names)."""
    groups = {process_manager(settings): [settings.topic(t) for t in PROCESS_INPUTS]}
    groups[aggregates(settings)] = [settings.topic(commands_of(name)) for name in AGGREGATES]
    for name in (m for m in MODULES if m not in AGGREGATES):
        groups[module(settings, name)] = [settings.topic(commands_of(name))]
    groups[read_model(settings)] = [settings.topic(t) for t in READ_MODEL_INPUTS]
    return groups


# Readers (assign partitions, commit nothing)


def history_reader(settings: Settings) -> str:
    """The reader of replay, verify and check."""
    return f"{settings.app_id}-replay-reader"


def lag_probe(settings: Settings) -> str:
    """The reader that counts the records behind a small lag."""
    return f"{settings.app_id}-lag-probe"


def rebuild(settings: Settings) -> str:
    """The reader that folds the event-sourced modules' events to rebuild their aggregates."""
    return f"{aggregates(settings)}-rebuild"

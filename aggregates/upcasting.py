"""Schema evolution: every message type's current ``schema_version``, and the upcasters that
lift the ``data`` of an older version to the next one.

Topics that keep events forever hold records written by every past release. A reader never
interprets old data itself: the envelope lifts it to the current model first, one registered
function per (type, version), each taking the wire ``data`` of that version (a JSON object,
without ``type``) to the next. A type not listed in ``CURRENT_VERSIONS`` is at version 1.

A record of a version newer than ``CURRENT_VERSIONS`` says was written by a later release:
this one cannot know what it means, and refuses it (``FutureVersion``); the codec turns that
into a dead letter whose reason names the version.

To change a message: bump its version here, change its model in ``aggregates.messages``,
and register the upcaster from the previous version. Writers always write the current one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

Data = dict[str, Any]
Upcaster = Callable[[Data], Data]

CURRENT_VERSIONS: Final[dict[str, int]] = {
    "PaymentFinalized": 2,
}
"""The version this release writes, per message type (1 when not listed)."""

UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""``(type, version) -> function`` lifting ``data`` of that version to ``version + 1``."""


class FutureVersion(ValueError):
    """A record written with a newer schema version than this release reads."""


def current_version(message_type: str) -> int:
    return CURRENT_VERSIONS.get(message_type, 1)


def upcaster(message_type: str, version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the decorated function as the upcaster of ``message_type`` from ``version``."""

    def register(function: Upcaster) -> Upcaster:
        if (message_type, version) in UPCASTERS:
            raise ValueError(f"{message_type} v{version} already has an upcaster")
        UPCASTERS[(message_type, version)] = function
        return function

    return register


def upcast(message_type: str, version: int, data: Mapping[str, Any]) -> Data:
    """``data`` of ``message_type`` at ``version`` lifted to the current version.

    Raises ``FutureVersion`` for a version above the current one, and ``ValueError`` for a
    version below 1 or a step that has no upcaster.
    """
    current = current_version(message_type)
    if version > current:
        raise FutureVersion(
            f"schema_version {version} of {message_type} is newer than this release reads "
            f"(up to {current})"
        )
    if version < 1:
        raise ValueError(f"schema_version {version} of {message_type} is not a version")
    lifted = dict(data)
    for step in range(version, current):
        lift = UPCASTERS.get((message_type, step))
        if lift is None:
            raise ValueError(f"no upcaster for {message_type} from schema_version {step}")
        lifted = lift(lifted)
    return lifted


def upcast_envelope(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A wire envelope (its ``data`` a JSON object) lifted to the current version of its type.

    A missing ``schema_version`` is version 1, as the contract says. Anything that is not an
    envelope of a known shape is returned as it is, for validation to refuse.
    """
    message_type, data = obj.get("type"), obj.get("data")
    version = obj.get("schema_version", 1)
    if not isinstance(message_type, str) or not isinstance(data, Mapping):
        return dict(obj)
    if not isinstance(version, int) or isinstance(version, bool):
        return dict(obj)
    if version == current_version(message_type):
        return dict(obj)
    return {
        **obj,
        "schema_version": current_version(message_type),
        "data": upcast(message_type, version, data),
    }


# PaymentFinalized


@upcaster("PaymentFinalized", 1)
def _payment_finalized_v1(data: Data) -> Data:
    """v2 renames the optional ``settle_after`` to ``settles_at`` and always carries it.

    A v1 record without ``settle_after`` could settle at once (the payment module's rule for
    it): its ``settles_at`` is its ``finalized_at``.
    """
    lifted = {key: value for key, value in data.items() if key != "settle_after"}
    settles_at = data.get("settle_after")
    lifted["settles_at"] = settles_at if settles_at is not None else data.get("finalized_at")
    return lifted

"""Operators' actions on one process, as the web view takes them: auth, and the command.

The commands (``CancelProcess``, ``ResumeProcess``, ``SkipMessage``) go to
``processes.commands`` like any other process input.
"""

from __future__ import annotations

import hmac
import json

from aggregates.messages import CancelProcess, Message, ResumeProcess, SkipMessage
from process_manager import Process, is_terminal

DEFAULT_REASON = "cancelled by an operator in the web view"
DEFAULT_REQUESTER = "web-operator"
ACTIONS = ("cancel", "resume", "skip")


class Conflict(Exception):
    """The operator action does not fit the process's state (409)."""


def refusal(authorization: str | None, token: str | None) -> str | None:
    """Why an operator request is refused (401), or ``None`` when its bearer token is right."""
    if not token:
        return "operator actions are disabled: no OPERATOR_TOKEN is configured"
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "an operator action needs the header Authorization: Bearer <OPERATOR_TOKEN>"
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return "wrong operator token"
    return None


def operator_command(action: str, process: Process, body: bytes) -> Message:
    """The command of an operator ``action`` on ``process``, from the request's JSON body
    (every field optional: ``reason`` for a cancel, ``message_id`` for a resume or a skip,
    which must be the failing message, and ``requested_by``); ``ValueError`` (400) or
    ``Conflict`` (409)."""
    data = json.loads(body) if body.strip() else {}
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    order_id, by = process.order_id, str(data.get("requested_by") or DEFAULT_REQUESTER)
    if action == "cancel":
        if is_terminal(process.state):
            raise Conflict(f"the process is already {process.state}")
        reason = str(data.get("reason") or DEFAULT_REASON)
        return CancelProcess(order_id=order_id, reason=reason, requested_by=by)
    if process.quarantine is None:
        raise Conflict("the process is not quarantined")
    failing = process.quarantine.message.message_id
    named = str(data.get("message_id") or failing)
    if named != failing:
        raise Conflict(f"message {named} is not the failing one ({failing})")
    if action == "resume":
        return ResumeProcess(order_id=order_id, message_id=failing, requested_by=by)
    return SkipMessage(order_id=order_id, message_id=failing, requested_by=by)

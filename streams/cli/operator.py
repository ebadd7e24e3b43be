"""An operator's actions on one process: cancel it, or release a quarantined one.

They go through the workers' web API (``POST /processes/{order}/{cancel,resume,skip}/``) with
``OPERATOR_TOKEN``: the worker that owns the order checks the process's state and sends the
command (``CancelProcess``, ``ResumeProcess``, ``SkipMessage``) to ``processes.commands``, so
the rules of ``streams.process.actions`` have one owner.
"""

from __future__ import annotations

import getpass
from typing import Any
from urllib.parse import quote

import click

from streams.cli.output import emit_json, json_option
from streams.cli.web import base_url, call, check, url_option
from streams.settings import get_settings


def default_requester() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli-operator"


def by_option(command: Any) -> Any:
    return click.option(
        "--by", default=default_requester, help="who asks, recorded on the command (your login)"
    )(command)


def act(action: str, order_id: str, body: dict[str, Any], url: str | None, as_json: bool) -> None:
    base = base_url(url)
    target = f"{base}/processes/{quote(order_id, safe='')}/{action}/"
    status, answer = call("POST", target, body, get_settings().operator_token)
    if as_json and status:
        emit_json(answer)
    check(status, answer, base)
    if not as_json:
        click.echo(f"{answer['type']} accepted for {order_id} (message {answer['message_id']})")


@click.command()
@click.argument("order_id")
@click.option("--reason", help="why (recorded on CancelProcess)")
@by_option
@url_option
@json_option
def cancel(order_id: str, reason: str | None, by: str, url: str | None, as_json: bool) -> None:
    """Cancel ORDER_ID's process (not yet terminal), with the compensation its state needs."""
    body = {"requested_by": by} | ({"reason": reason} if reason else {})
    act("cancel", order_id, body, url, as_json)


@click.command()
@click.argument("order_id")
@click.option("--message-id", help="the failing message (checked against the quarantine)")
@by_option
@url_option
@json_option
def resume(order_id: str, message_id: str | None, by: str, url: str | None, as_json: bool) -> None:
    """Take a quarantined process's failing and parked messages in again, after a fix."""
    body = {"requested_by": by} | ({"message_id": message_id} if message_id else {})
    act("resume", order_id, body, url, as_json)


@click.command()
@click.argument("order_id")
@click.option("--message-id", help="the failing message (checked against the quarantine)")
@by_option
@url_option
@json_option
def skip(order_id: str, message_id: str | None, by: str, url: str | None, as_json: bool) -> None:
    """Skip a quarantined process's failing message (recorded as SkipMessage); take the parked
    ones in."""
    body = {"requested_by": by} | ({"message_id": message_id} if message_id else {})
    act("skip", order_id, body, url, as_json)

"""The workers' web API as the command line calls it: any worker answers for all of them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

import click

from streams.cli.output import Refused, Unreachable
from streams.settings import get_settings

TIMEOUT_S = 10
F = TypeVar("F", bound=Callable[..., Any])


def url_option(command: F) -> F:
    """``--url``: the worker to ask (default ``http://127.0.0.1:WEB_PORT``)."""
    return click.option(
        "--url",
        envvar="ORDERFLOW_URL",
        help="a worker's web address (default: http://127.0.0.1:WEB_PORT; env ORDERFLOW_URL)",
    )(command)


def base_url(url: str | None) -> str:
    return (url or f"http://127.0.0.1:{get_settings().web_port}").rstrip("/")


def call(
    method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, Any]:
    """(HTTP status, JSON answer); status 0 when no worker answered."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, _json_or_text(error.read())
    except (urllib.error.URLError, OSError) as error:
        return 0, {"error": str(getattr(error, "reason", error))}


def get(base: str, path: str) -> Any:
    """The JSON answer of ``GET base+path``; ``Refused`` or ``Unreachable`` otherwise."""
    status, answer = call("GET", base + path)
    check(status, answer, base)
    return answer


def check(status: int, answer: Any, base: str) -> None:
    if status == 0:
        raise Unreachable(f"no worker at {base}: {answer['error']}")
    if status >= 300:
        error = answer.get("error") if isinstance(answer, dict) else None
        raise Refused(f"{status}: {error or answer}")


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return {"error": raw.decode(errors="replace").strip()[:200]}

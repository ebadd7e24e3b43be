"""An operator's actions on one process, over the workers' web API (the token guards both).

    python -m streams.process.operator cancel ORDER [--reason TEXT]    CancelProcess
    python -m streams.process.operator resume ORDER [--message-id ID]  retry a quarantined process
    python -m streams.process.operator skip ORDER [--message-id ID]    skip its failing message
    python -m streams.process.operator quarantined                     list quarantined processes

Each takes ``--by NAME`` (who asks, recorded on the command) and ``--url`` (any worker;
``http://127.0.0.1:WEB_PORT`` by default). The token is ``OPERATOR_TOKEN``. Exit codes: 0
accepted, 1 refused (the answer's error is printed), 2 no worker reachable.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from streams.settings import Settings, get_settings

TIMEOUT_S = 10


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = settings or get_settings()
    base = (args.url or f"http://127.0.0.1:{settings.web_port}").rstrip("/")
    if args.action == "quarantined":
        status, answer = _call("GET", f"{base}/processes/?quarantined=true&limit=10000", None)
    else:
        body = {"requested_by": args.by}
        body |= {"reason": args.reason} if args.action == "cancel" and args.reason else {}
        body |= {"message_id": args.message_id} if getattr(args, "message_id", None) else {}
        order = quote(args.order_id, safe="")
        url = f"{base}/processes/{order}/{args.action}/"
        status, answer = _call("POST", url, body, settings.operator_token)
    if status == 0:
        print(f"no worker at {base}: {answer['error']}", file=sys.stderr)
        return 2
    print(json.dumps(answer, indent=2))
    return 0 if status < 300 else 1


def _call(
    method: str, url: str, body: dict[str, Any] | None, token: str | None = None
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
        return error.code, json.loads(error.read() or b"{}")
    except (urllib.error.URLError, OSError) as error:
        return 0, {"error": str(error)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streams.process.operator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="a worker's web address (default: this host's WEB_PORT)")
    actions = parser.add_subparsers(dest="action", required=True)
    for name, summary in (
        ("cancel", "cancel a process that is not terminal"),
        ("resume", "take a quarantined process's failing and parked messages in again"),
        ("skip", "skip a quarantined process's failing message"),
    ):
        action = actions.add_parser(name, help=summary)
        action.add_argument("order_id")
        action.add_argument("--by", default="cli-operator", help="who asks")
        if name == "cancel":
            action.add_argument("--reason")
        if name in ("resume", "skip"):
            action.add_argument("--message-id", help="the failing message (checked)")
    actions.add_parser("quarantined", help="list the quarantined processes")
    return parser


if __name__ == "__main__":
    sys.exit(main())

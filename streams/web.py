"""The process web view on Faust's web server (JSON for tools; HTML pages come with /ui/)."""

from __future__ import annotations

import json
from typing import Any

import faust
from faust.web import Request, Response, View


def register_views(app: faust.App, processes: Any) -> None:
    """Add the process routes to ``app``; ``processes`` is the process table."""

    @app.page("/processes/{order_id}/")
    @app.table_route(table=processes, match_info="order_id")
    async def process_detail(web: View, request: Request, order_id: str) -> Response:
        raw = processes.get(order_id.encode())
        if raw is None:
            return web.json({"error": f"no process for order {order_id}"}, status=404)
        return web.json(json.loads(raw))

"""The process web view on Faust's web server: JSON for tools, HTML pages under ``/ui/``.

    GET  /processes/{order_id}/          the process record, routed to the worker that owns it
    GET  /processes/?state=&stalled=&quarantined=&limit=&stalled_after=
                                         process summaries of all workers, latest change first
    GET  /processes/stats/?stalled=      {state: count} over all workers, every state listed
    POST /processes/{order_id}/cancel/   operator actions (Bearer OPERATOR_TOKEN): CancelProcess,
    POST /processes/{order_id}/resume/   ResumeProcess and SkipMessage (of a quarantined process)
    POST /processes/{order_id}/skip/
    GET  /processes/{order_id}/timeline/?at=&offset=
                                         every input of the order, read from the topics
    GET  /ui/  /ui/processes/{order_id}/?at=&offset=
                                         the same, as HTML pages

The queries and the stalled rule are ``process.queries``; operators' auth and commands are
``process.actions``.

Fan-out: each worker holds only its active partitions of the table. The worker that receives a
list or stats request answers its own part and asks every other worker in the assignor's table
metadata (canonical URL -> partitions) for theirs with ``local=true``. Each part names the
partitions it covers; unless the parts cover every partition exactly once (during a rebalance,
or with a worker gone), the answer is 503 rather than a list that misses or repeats processes.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote

import aiohttp
import faust
from faust.web import Request, Response, View
from yarl import URL

from process_manager import Process, State
from streams.kafka.codec import encode, external
from streams.kafka.topics import PROCESS_COMMANDS
from streams.observability import metrics
from streams.process.actions import ACTIONS, Conflict, operator_command, refusal
from streams.process.queries import (
    STALLED_AFTER,
    Query,
    Unavailable,
    check_coverage,
    flag,
    is_stalled,
    latest_first,
    summarize,
)
from streams.process.timeline import Position, Timeline, parse_time, read_timeline
from streams.process.ui import pages
from streams.settings import Settings

PEER_TIMEOUT = aiohttp.ClientTimeout(total=5)
TIMELINE_TIMEOUT_S = 10.0
"""How long a request may read an order's partitions for its timeline."""


# The table across workers


class ProcessTable:
    """The process table as the web view sees it: this worker's part, and every worker's."""

    def __init__(self, app: faust.App, table: Any) -> None:
        self.app = app
        self.table = table

    def load(self, order_id: str) -> Process | None:
        raw = self.table.get(order_id.encode())
        return None if raw is None else Process.model_validate_json(raw)

    # This worker's part

    def owned_partitions(self) -> list[int]:
        if self.app.rebalancing or not self.app.tables.actives_ready:
            raise Unavailable("this worker is rebalancing; try again")
        topic = self.table.changelog_topic.get_topic_name()
        return sorted(
            tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic
        )

    def local_list(self, query: Query, now: datetime) -> dict[str, Any]:
        partitions = self.owned_partitions()
        found = (Process.model_validate_json(raw) for raw in self.table.values())
        rows = [summarize(p, now, query.stalled_after) for p in found if query.matches(p, now)]
        rows = sorted(rows, key=latest_first)[: query.limit]
        return {"worker": self.url(), "partitions": partitions, "processes": rows}

    def local_stats(self, query: Query, now: datetime) -> dict[str, Any]:
        partitions = self.owned_partitions()
        states, stalled = dict.fromkeys(State, 0), dict.fromkeys(State, 0)
        for raw in self.table.values():
            process = Process.model_validate_json(raw)
            states[process.state] += 1
            stalled[process.state] += is_stalled(process, now, query.stalled_after)
        return {
            "worker": self.url(),
            "partitions": partitions,
            "states": states,
            "stalled": stalled,
        }

    # Every worker's part

    async def summaries(self, query: Query) -> list[dict[str, Any]]:
        own = self.local_list(query, datetime.now(UTC))
        parts = await self._with_peers(own, "/processes/", query)
        rows = [row for part in parts for row in part["processes"]]
        return sorted(rows, key=latest_first)[: query.limit]

    async def stats(self, query: Query) -> tuple[dict[State, int], dict[State, int]]:
        """The count of processes in each state, and of stalled ones."""
        own = self.local_stats(query, datetime.now(UTC))
        parts = await self._with_peers(own, "/processes/stats/", query)
        states, stalled = dict.fromkeys(State, 0), dict.fromkeys(State, 0)
        for part in parts:
            for state in State:
                states[state] += part["states"].get(state, 0)
                stalled[state] += part["stalled"].get(state, 0)
        return states, stalled

    async def get(self, order_id: str) -> Process | None:
        """The process of ``order_id``, from this worker or the one that owns it."""
        try:
            owner = self.app.router.key_store(self.table.name, order_id)
        except KeyError:
            raise Unavailable("no worker owns this order yet (rebalancing?)") from None
        if _same_worker(owner, self.url()):
            return self.load(order_id)
        data = await self._fetch(owner.with_path(f"/processes/{quote(order_id, safe='')}/"))
        return None if data is None else Process.model_validate(data)

    async def _with_peers(self, own: dict[str, Any], path: str, query: Query) -> list[Any]:
        params = query.params() | {"local": "true"}
        fetches = [self._fetch(peer.with_path(path).with_query(params)) for peer in self.peers()]
        parts = [own, *await asyncio.gather(*fetches)]
        if None in parts:
            raise Unavailable("a worker does not serve the process view")
        check_coverage(parts, self.table.partitions or self.app.conf.topic_partitions)
        return parts

    def peers(self) -> list[URL]:
        """The other workers, by canonical URL, from the assignor's table metadata."""
        hosts = sorted(self.app.router.tables_metadata())
        return [URL(host) for host in hosts if not _same_worker(URL(host), self.url())]

    def url(self) -> str:
        return str(self.app.conf.canonical_url)

    async def _fetch(self, url: URL) -> Any:
        """The JSON at ``url``, or ``None`` on 404; ``Unavailable`` on anything else."""
        try:
            async with self.app.http_client.get(url, timeout=PEER_TIMEOUT) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    text = await response.text()
                    raise Unavailable(f"worker {url.origin()} answered {response.status}: {text}")
                return await response.json()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise Unavailable(f"worker {url.origin()} did not answer: {error!r}") from error


def _same_worker(a: URL | str, b: URL | str) -> bool:
    a, b = URL(str(a)), URL(str(b))
    return (a.host, a.port) == (b.host, b.port)


# The timeline, from the topics


def timeline_bounds(params: Any) -> tuple[datetime | None, Position | None]:
    """``at`` and ``offset`` of a request; ``ValueError`` when malformed or both given."""
    at_text, offset_text = params.get("at") or None, params.get("offset") or None
    if at_text and offset_text:
        raise ValueError("give at or offset, not both")
    at = None if at_text is None else parse_time(at_text)
    return at, None if offset_text is None else Position.parse(offset_text)


async def timeline_of(settings: Settings, order_id: str, params: Any) -> Timeline:
    """The order's timeline read off the event loop, in a short-lived consumer of its own.

    ``ValueError`` for bad bounds; ``Unavailable`` when the topics cannot be read in time.
    """
    at, position = timeline_bounds(params)
    read = partial(
        read_timeline, settings, order_id, at=at, position=position, timeout_s=TIMELINE_TIMEOUT_S
    )
    try:
        return await asyncio.get_running_loop().run_in_executor(None, read)
    except (TimeoutError, LookupError) as error:
        raise Unavailable(f"the topics could not be read: {error}") from error


# Routes


def status_of(error: Exception) -> int:
    """The HTTP status of a refused request: 503 unavailable, 409 conflict, 400 bad request."""
    if isinstance(error, Unavailable):
        return 503
    if isinstance(error, Conflict):
        return 409
    return 400


def refused(web: View, error: Exception) -> Response:
    return web.json({"error": str(error)}, status=status_of(error))


def register_routes(app: faust.App, processes: Any | None, settings: Settings) -> None:
    """Every route a worker serves beside Faust's own: the process views and ``/metrics``.

    ``processes`` is None with ``COORDINATION=saga``: the same paths then say that this mode
    keeps no process state.
    """
    if processes is None:
        register_stateless_views(app)
    else:
        register_views(app, processes, settings)
    metrics.register_metrics(app, processes, settings)


NO_PROCESS_STATE = (
    "this system runs COORDINATION=saga: the stateless saga keeps no process state, so there "
    "are no processes to show or act on; the orders are in the read model (orders_view) and "
    "on the events topics"
)


def register_stateless_views(app: faust.App) -> None:
    """The process paths in saga mode: 404 with the reason, in JSON, or HTML under ``/ui/``."""

    class NoProcesses(View):
        async def get(self, request: Request, **_: Any) -> Response:
            return self.json({"error": NO_PROCESS_STATE, "coordination": "saga"}, status=404)

        async def post(self, request: Request, **_: Any) -> Response:
            return await self.get(request)

    class NoProcessPages(View):
        async def get(self, request: Request, **_: Any) -> Response:
            return self.html(pages.error_page(404, NO_PROCESS_STATE), status=404)

    paths = ["/processes/", "/processes/stats/", "/processes/{order_id}/"]
    paths += [f"/processes/{{order_id}}/{action}/" for action in ACTIONS]
    for n, path in enumerate(paths):
        app.page(path, name=f"no-process-state-{n}")(NoProcesses)
    app.page("/ui/", name="no-process-ui")(NoProcessPages)
    app.page("/ui/processes/{order_id}/", name="no-process-ui-page")(NoProcessPages)


def register_views(app: faust.App, processes: Any, settings: Settings) -> None:
    """Add the process routes to ``app``; ``processes`` is the process table."""
    view = ProcessTable(app, processes)
    commands = app.topic(settings.topic(PROCESS_COMMANDS), key_type=bytes, value_type=bytes)

    # JSON (stats and cancel before the detail route, which would match them too)

    @app.page("/processes/")
    async def process_list(web: View, request: Request) -> Response:
        try:
            query = Query.parse(request.query)
            if flag(request.query.get("local")):
                return web.json(view.local_list(query, datetime.now(UTC)))
            return web.json(await view.summaries(query))
        except (ValueError, Unavailable) as error:
            return refused(web, error)

    @app.page("/processes/stats/")
    async def process_stats(web: View, request: Request) -> Response:
        try:
            query = Query.parse(request.query)
            if flag(request.query.get("local")):
                return web.json(view.local_stats(query, datetime.now(UTC)))
            states, stalled = await view.stats(query)
            return web.json(stalled if query.stalled else states)
        except (ValueError, Unavailable) as error:
            return refused(web, error)

    async def operator_action(web: View, request: Request, order_id: str, action: str) -> Response:
        denied = refusal(request.headers.get("Authorization"), settings.operator_token)
        if denied is not None:
            headers = {"WWW-Authenticate": 'Bearer realm="orderflow operators"'}
            return web.json({"error": denied}, status=401, headers=headers)
        try:
            process = await view.get(order_id)
            if process is None:
                return web.json({"error": f"no process for order {order_id}"}, status=404)
            body = await web.read_request_content(request)
            command = operator_command(action, process, body)
        except (ValueError, Unavailable, Conflict) as error:  # ValueError: bad JSON or field
            return refused(web, error)
        envelope = external(command)  # an operator is outside: fresh id, now, no cause
        sent = await commands.send(key=order_id.encode(), value=encode(envelope))
        await sent  # delivered to Kafka before the operator hears "accepted"
        accepted = {"message_id": envelope.message_id, "order_id": order_id}
        return web.json(accepted | {"type": envelope.type}, status=202)

    for action in ACTIONS:

        @app.page(f"/processes/{{order_id}}/{action}/", name=f"process-{action}")
        class ActionView(View):
            async def post(self, request: Request, order_id: str, action: str = action) -> Response:
                return await operator_action(self, request, order_id, action)

    @app.page("/processes/{order_id}/timeline/")
    async def process_timeline(web: View, request: Request, order_id: str) -> Response:
        try:
            timeline = await timeline_of(settings, order_id, request.query)
        except (ValueError, Unavailable) as error:
            return refused(web, error)
        if not timeline.entries:
            return web.json({"error": f"no input for order {order_id}"}, status=404)
        return web.json(timeline.as_json())

    @app.page("/processes/{order_id}/")
    @app.table_route(table=processes, match_info="order_id")
    async def process_detail(web: View, request: Request, order_id: str) -> Response:
        raw = processes.get(order_id.encode())
        if raw is None:
            return web.json({"error": f"no process for order {order_id}"}, status=404)
        return web.json(json.loads(raw))

    # HTML

    @app.page("/ui/")
    async def ui_index(web: View, request: Request) -> Response:
        try:
            query = Query.parse(request.query)
            rows, (states, stalled) = await asyncio.gather(view.summaries(query), view.stats(query))
        except (ValueError, Unavailable) as error:
            status = status_of(error)
            return web.html(pages.error_page(status, str(error)), status=status)
        after = query.stalled_after.total_seconds()
        filters = pages.Filters(query.state, query.stalled, query.limit, after, query.quarantined)
        return web.html(pages.index_page(rows, states, stalled, filters))

    @app.page("/ui/processes/{order_id}/")
    @app.table_route(table=processes, match_info="order_id")
    async def ui_process(web: View, request: Request, order_id: str) -> Response:
        process = view.load(order_id)
        if process is None:
            return web.html(pages.error_page(404, f"no process for order {order_id}"), status=404)
        now = datetime.now(UTC)
        stalled = is_stalled(process, now, STALLED_AFTER)
        try:
            timeline: Timeline | str = await timeline_of(settings, order_id, request.query)
        except ValueError as error:
            return web.html(pages.error_page(400, str(error)), status=400)
        except Unavailable as error:
            timeline = str(error)  # the page falls back to the record's history
        operator = bool(settings.operator_token)
        return web.html(pages.process_page(process, stalled, operator, timeline, request.query))

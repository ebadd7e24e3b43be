"""The web view on two real workers: routing, fan-out, the operator's cancel, and the HTML pages.

The browser test drives Debian's headless Chromium (``deploy/browser.sh`` installs it); it fails,
never skips, when the browser is missing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import itertools
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.settings import Settings
from tests.integration.flows import get_process, place_order, stock, wait_terminal
from tests.integration.harness import REPO, Service, faust_worker, isolated_settings, unique

pytestmark = pytest.mark.integration

PORTS = (16081, 16082)
TOKEN = "operator-secret"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / ".data" / "artifacts"
CHROMIUM_FLAGS = [
    CHROMIUM,
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

T = TypeVar("T")


@dataclass
class Cluster:
    """Two workers on fresh topics, and the orders placed through them by expected outcome."""

    settings: Settings
    owner: dict[str, int]  # order id -> web port of the worker that owns it
    completed: list[str]
    declined: list[str]
    stalled: list[str]  # card_no_response: stays AwaitingPayment
    to_cancel: str  # card_no_response, for the operator; owned by PORTS[0], cancelled via PORTS[1]
    for_browser: str  # card_no_response, cancelled by clicking in the browser

    @property
    def orders(self) -> list[str]:
        return [*self.completed, *self.declined, *self.stalled, self.to_cancel, self.for_browser]


# HTTP, as a client sees it


def call(
    port: int,
    path: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def get_json(port: int, path: str) -> Any:
    status, body = call(port, path)
    assert status == 200, f"GET {path} on {port}: {status} {body!r}"
    return json.loads(body)


def eventually(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    deadline, error = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result is not None:
                return result
        except (AssertionError, OSError) as failure:
            error = failure
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {timeout}s (last error: {error})")


def local_partitions(port: int) -> set[int]:
    return set(get_json(port, "/processes/?local=true")["partitions"])


def both_serve_the_list() -> bool | None:
    return all(call(port, "/processes/")[0] == 200 for port in PORTS) or None


# The cluster, once for the module


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    isolated, env = isolated_settings(settings)
    env |= {"OPERATOR_TOKEN": TOKEN, "PROCESS_TIMEOUTS": json.dumps({"AwaitingPayment": 600})}
    base = tmp_path_factory.mktemp("web")
    workers = [faust_worker("streams.process.worker", env, base / f"w{p}", p) for p in PORTS]
    try:
        for worker in workers:
            worker.start()
        eventually(both_serve_the_list, "both workers serving the list after the rebalance", 90)
        yield place_orders(isolated, {port: local_partitions(port) for port in PORTS})
    finally:
        stop(workers)


def stop(workers: list[Service]) -> None:
    for worker in workers:
        if worker.running():
            worker.stop()


def place_orders(settings: Settings, partitions_of: dict[int, set[int]]) -> Cluster:
    """Orders owned by each worker, chosen by the key's partition (murmur2, as Kafka's)."""
    owner: dict[str, int] = {}

    def order_on(port: int) -> str:
        while True:
            order_id = unique("order")
            key = order_id.encode()
            count = settings.topic_partitions
            if (
                DefaultPartitioner()(key, list(range(count)), list(range(count)))
                in partitions_of[port]
            ):
                owner[order_id] = port
                return order_id

    a, b = PORTS
    sku = unique("sku")
    stock(settings, {sku: 100})
    completed = [order_on(a), order_on(b), order_on(b)]
    declined = [order_on(a), order_on(b)]
    stalled = [order_on(a), order_on(b)]
    to_cancel, for_browser = order_on(a), order_on(b)
    for order_id in completed:
        place_order(settings, order_id, "card_ok", [(sku, 1)])
    for order_id in declined:
        place_order(settings, order_id, "card_declined", [(sku, 1)])
    for order_id in [*stalled, to_cancel, for_browser]:
        place_order(settings, order_id, "card_no_response", [(sku, 1)])
    for order_id in [*completed, *declined]:
        wait_terminal(PORTS[0], order_id, timeout=90)
    for order_id in [*stalled, to_cancel, for_browser]:
        eventually(functools.partial(awaiting_payment, order_id), f"{order_id} awaiting payment")
    return Cluster(settings, owner, completed, declined, stalled, to_cancel, for_browser)


def awaiting_payment(order_id: str) -> bool | None:
    process = get_process(PORTS[0], order_id)
    return (process is not None and process["state"] == "AwaitingPayment") or None


# Routing and fan-out


def test_every_process_answers_the_same_from_both_workers(cluster: Cluster) -> None:
    # Given orders owned by each of the two workers
    held = {port: get_json(port, "/processes/?local=true&limit=1000") for port in PORTS}
    holders = {row["order_id"]: port for port, part in held.items() for row in part["processes"]}
    assert holders == cluster.owner
    assert set(cluster.owner.values()) == set(PORTS)

    # When each process is asked for on both ports
    answers = {o: [get_process(port, o) for port in PORTS] for o in cluster.orders}

    # Then both answer the same record, so the non-owner proxied it to the owner
    for order_id, (first, second) in answers.items():
        assert first is not None and first == second
        assert first["order_id"] == order_id
    assert get_process(PORTS[1], unique("nobody")) is None


def test_list_and_stats_count_every_order_once_on_either_worker(cluster: Cluster) -> None:
    # Given the processes as their owners tell them
    expected = Counter(
        get_json(cluster.owner[o], f"/processes/{o}/")["state"] for o in cluster.orders
    )

    for port in PORTS:
        # When the list and the stats are asked for on either worker
        rows = get_json(port, "/processes/?limit=1000")
        stats = get_json(port, "/processes/stats/")

        # Then every order appears exactly once, and the counts agree
        assert sorted(row["order_id"] for row in rows) == sorted(cluster.orders)
        assert {s: n for s, n in stats.items() if n} == dict(expected)
        assert {"Completed", "Cancelled", "AwaitingPayment"} <= set(stats)
        assert sum(stats.values()) == len(cluster.orders)


def test_the_list_filters_by_state_and_stalled_and_limits(cluster: Cluster) -> None:
    # When the list is filtered, on the worker that does not own most of them
    completed = get_json(PORTS[0], "/processes/?state=Completed&limit=1000")
    stalled = eventually(
        lambda: stalled_list(cluster.stalled), "the stalled processes listed", timeout=10
    )
    two = get_json(PORTS[1], "/processes/?limit=2")
    status, _ = call(PORTS[1], "/processes/?state=Nowhere")

    # Then each filter keeps exactly its processes, latest change first
    assert sorted(r["order_id"] for r in completed) == sorted(cluster.completed)
    assert set(cluster.stalled) <= {r["order_id"] for r in stalled}
    assert all(r["stalled"] and r["state"] == "AwaitingPayment" for r in stalled)
    assert len(two) == 2
    assert two == get_json(PORTS[0], "/processes/?limit=2")
    assert two[0]["updated_at"] >= two[1]["updated_at"]
    assert status == 400


def stalled_list(expected: list[str]) -> list[dict[str, Any]] | None:
    rows: list[dict[str, Any]] = get_json(PORTS[0], "/processes/?stalled=true&stalled_after=1")
    return rows if set(expected) <= {r["order_id"] for r in rows} else None


# The operator's cancel


def test_faust_does_not_serve_its_raw_table_and_router_views(cluster: Cluster) -> None:
    # Given a running worker that owns processes
    # When anyone asks for Faust's built-in table and router views
    # Then they are not served: they would dump raw records without a token
    for path in ("/table/", "/table/processes/", "/router/", "/router/processes/"):
        status, _ = call(PORTS[0], path)
        assert status == 404, f"{path}: {status}"
    assert call(PORTS[0], "/processes/stats/")[0] == 200


def test_cancel_is_refused_without_the_right_token(cluster: Cluster) -> None:
    path = f"/processes/{cluster.to_cancel}/cancel/"
    wrong = {"Authorization": "Bearer not-the-token"}
    right = {"Authorization": f"Bearer {TOKEN}"}

    # When an operator action comes without a token, with a wrong one, or for no process
    assert call(PORTS[1], path, "POST", {})[0] == 401
    assert call(PORTS[1], path, "POST", {}, wrong)[0] == 401
    assert call(PORTS[1], f"/processes/{unique('nobody')}/cancel/", "POST", {}, right)[0] == 404
    # (a finished process has nothing left to cancel)
    assert call(PORTS[1], f"/processes/{cluster.completed[0]}/cancel/", "POST", {}, right)[0] == 409

    # Then nothing happened to the process
    assert get_process(PORTS[0], cluster.to_cancel)["state"] == "AwaitingPayment"  # type: ignore[index]


def test_an_operator_cancels_a_stalled_process_over_http(cluster: Cluster) -> None:
    # Given a process stuck awaiting a payment, owned by the first worker
    order_id = cluster.to_cancel
    assert cluster.owner[order_id] == PORTS[0]

    # When an operator cancels it on the other worker, with the token
    body = {"reason": "customer called", "requested_by": "ops-1"}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    status, answer = call(PORTS[1], f"/processes/{order_id}/cancel/", "POST", body, headers)

    # Then it is accepted, and the process ends cancelled by hand
    assert status == 202, answer
    message_id = json.loads(answer)["message_id"]
    process = wait_terminal(PORTS[1], order_id)
    assert process["state"] == "Cancelled"
    assert process["cancellation_reason"] == "ManualCancellation"
    cancel = next(e for e in process["history"] if e["message_type"] == "CancelProcess")
    assert cancel["message_id"] == message_id


# The HTML pages


def test_the_ui_pages_show_the_processes_and_their_states(cluster: Cluster) -> None:
    for port in PORTS:
        # When a person opens the list, and a process owned by the other worker
        status, page = call(port, "/ui/")
        other = next(o for o in cluster.completed if cluster.owner[o] != port)
        detail_status, detail = call(port, f"/ui/processes/{other}/")

        # Then the list shows every order and the states, and the process its timeline
        assert status == 200
        text = page.decode()
        assert all(order_id in text for order_id in cluster.orders)
        assert all(s in text for s in ("Completed", "Cancelled", "AwaitingPayment", "stateDiagram"))
        assert detail_status == 200
        text = detail.decode()
        assert other in text and 'id="timeline"' in text
        for step in ("CartFinalized", "OrderCompleted", "InitOrder", "CompleteOrder"):
            assert step in text
    assert call(PORTS[0], f"/ui/processes/{unique('nobody')}/")[0] == 404


def test_a_headless_browser_renders_the_list_and_a_process(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Given Debian's Chromium (deploy/browser.sh installs it)
    need_chromium()
    stalled = next(o for o in cluster.stalled if cluster.owner[o] != PORTS[1])
    pages = {
        "list": f"http://127.0.0.1:{PORTS[1]}/ui/?stalled_after=1",
        "process": f"http://127.0.0.1:{PORTS[1]}/ui/processes/{stalled}/",
    }

    for name, url in pages.items():
        # When the browser loads the page and runs its scripts
        dom = chromium(tmp_path, "--dump-dom", url).stdout
        shot = tmp_path / f"ui-{name}.png"
        chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,900", url)

        # Then the rendered page shows the processes and states, and the screenshot is real
        assert "AwaitingPayment" in dom and stalled in dom
        assert shot.stat().st_size > 20_000
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, ARTIFACTS / shot.name)
        if name == "list":
            assert all(order_id in dom for order_id in cluster.orders)
            assert 'id="counts"' in dom and "<svg" in dom
        else:
            assert 'id="timeline"' in dom and 'id="cancel"' in dom


def test_the_cancel_button_shows_the_401_and_then_cancels(cluster: Cluster, tmp_path: Path) -> None:
    # Given a stalled process open in the browser, on the worker that does not own it
    need_chromium()
    order_id = cluster.for_browser
    url = f"http://127.0.0.1:{PORTS[0]}/ui/processes/{order_id}/"

    # When the operator clicks cancel with no token, a wrong one, and then the right one
    results, shot = asyncio.run(click_cancel(tmp_path, url, ["", "wrong-token", TOKEN]))

    # Then the page shows the two refusals, then the acceptance; the process ends cancelled
    assert results[0].startswith("401") and "Bearer" in results[0]
    assert results[1].startswith("401") and "wrong operator token" in results[1]
    assert results[2].startswith("202 Accepted")
    (tmp_path / "ui-cancel-401.png").write_bytes(shot)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "ui-cancel-401.png", ARTIFACTS / "ui-cancel-401.png")
    assert len(shot) > 20_000
    process = wait_terminal(PORTS[1], order_id)
    assert process["cancellation_reason"] == "ManualCancellation"


# Chromium, headless


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/browser.sh")


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run: ``--dump-dom`` or ``--screenshot``, after the page's scripts ran."""
    argv = [
        *CHROMIUM_FLAGS,
        "--virtual-time-budget=5000",
        f"--user-data-dir={profile / 'chromium'}",
        *args,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


async def click_cancel(profile: Path, url: str, tokens: list[str]) -> tuple[list[str], bytes]:
    """Click the cancel button once per token; what the page said each time, and a screenshot
    taken after the first refusal. Driven over the DevTools protocol (a websocket)."""
    results: list[str] = []
    shot = b""
    async with devtools(profile) as send:
        target = await send("Target.createTarget", url="about:blank")
        session = (await send("Target.attachToTarget", targetId=target["targetId"], flatten=True))[
            "sessionId"
        ]

        async def js(expression: str) -> Any:
            answer = await send(
                "Runtime.evaluate", session, expression=expression, returnByValue=True
            )
            return answer["result"].get("value")

        await send(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=1280,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        await send("Page.navigate", session, url=url)
        await until(
            lambda: js("document.readyState === 'complete' && !!document.getElementById('cancel')")
        )
        for token in tokens:
            await js(
                f"document.getElementById('token').value = {json.dumps(token)};"
                "document.getElementById('cancel-result').textContent = '';"
                "document.querySelector('#cancel button').click(); true"
            )
            text = await until(
                lambda: js(
                    "(t => /^[0-9]{3} /.test(t) ? t : null)"
                    "(document.getElementById('cancel-result').textContent)"
                )
            )
            results.append(text)
            if not shot:
                shot = base64.b64decode((await send("Page.captureScreenshot", session))["data"])
    return results, shot


async def until(probe: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"the page did not get there in {timeout}s")


@contextlib.asynccontextmanager
async def devtools(profile: Path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """A headless Chromium and a function that sends it one DevTools command."""
    log = profile / "devtools.log"
    with log.open("w") as stderr:
        browser = subprocess.Popen(
            [
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile / 'devtools'}",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                "about:blank",
            ],
            stderr=stderr,
        )
    try:
        address = await until(lambda: devtools_address(log))
        ids = itertools.count(1)
        async with aiohttp.ClientSession() as http, http.ws_connect(address, max_msg_size=0) as ws:

            async def send(method: str, session: str | None = None, **params: Any) -> Any:
                number = next(ids)
                routing = {"sessionId": session} if session else {}
                await ws.send_json({"id": number, "method": method, "params": params, **routing})
                async for message in ws:
                    data = json.loads(message.data)
                    if data.get("id") == number:
                        assert "error" not in data, data["error"]
                        return data["result"]
                raise AssertionError("the browser closed the DevTools connection")

            yield send
    finally:
        browser.terminate()
        browser.wait(10)


async def devtools_address(log: Path) -> str | None:
    found = re.search(r"DevTools listening on (ws://\S+)", log.read_text(errors="replace"))
    return found.group(1) if found else None

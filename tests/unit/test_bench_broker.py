"""The broker probe's request-log summary, over lines in the broker's own format."""

from __future__ import annotations

import pytest

from bench.broker import threads
from bench.broker.request_log import summarize

PRODUCE = (
    '[2026-12-06 06:17:54,288] DEBUG Completed request:{"isForwarded":false,"requestHeader":'
    '{"requestApiKey":0,"requestApiVersion":10,"correlationId":1498,"clientId":"shop-loop-w1",'
    '"requestApiKeyName":"PRODUCE"},"request":{"transactionalId":"shop-loop-w1","acks":-1},'
    '"response":{"responses":[{"name":"shop.payments.commands","partitionResponses":[{"index":2,'
    '"errorCode":0},{"index":5,"errorCode":0}]},{"name":"shop-processes-changelog",'
    '"partitionResponses":[{"index":2,"errorCode":0}]}],"throttleTimeMs":0},'
    '"connection":"127.0.0.1:9092-127.0.0.1:58820-104"} (kafka.request.logger)\n'
)
VERIFY = (
    '[2026-12-06 06:17:54,289] DEBUG Completed request:{"isForwarded":false,"requestHeader":'
    '{"requestApiKey":24,"requestApiVersion":5,"correlationId":7,'
    '"clientId":"AddPartitionsManager-client-1","requestApiKeyName":"ADD_PARTITIONS_TO_TXN"},'
    '"request":"","response":{}} (kafka.request.logger)\n'
)


def test_requests_are_counted_by_client_and_a_produce_by_the_partitions_it_carried() -> None:
    # Given two produce requests, one verification and a line of another logger
    given = [PRODUCE, VERIFY, PRODUCE, "[2026-12-06 06:17:55,000] INFO something else\n"]

    # When the log is summed
    summary = summarize(given)

    # Then each request counts once for its client, and a produce by its three partitions
    assert summary.by_client == {
        ("shop-loop-w1", "PRODUCE"): 2,
        ("AddPartitionsManager-client-1", "ADD_PARTITIONS_TO_TXN"): 1,
    }
    assert summary.partitions_per_produce == {3: 2}


def _load(at: str, thread: str, user: float, system: float = 0.0) -> dict[str, object]:
    return {
        "type": "jdk.ThreadCPULoad",
        "values": {
            "startTime": f"2026-12-06T21:35:{at}Z",
            "eventThread": {"osName": thread, "javaName": thread},
            "user": user,
            "system": system,
        },
    }


def test_broker_threads_are_summed_by_kind_over_the_periods_their_loads_cover() -> None:
    # Given the loads (shares of a 2-core machine) of three threads at three instants 10 s
    # apart; the first instant's loads cover a span JFR does not say
    events = [
        _load("30.050", "C2 CompilerThread0", 0.9),
        _load("40.051", "C2 CompilerThread0", 0.25),
        _load("40.051", "data-plane-kafka-request-handler-0", 0.05, 0.05),
        _load("40.051", "data-plane-kafka-request-handler-7", 0.1),
        _load("50.049", "C2 CompilerThread0", 0.01),
        _load("50.049", "data-plane-kafka-request-handler-0", 0.1),
        _load("50.049", "C1 CompilerThread1", 0.05),
    ]

    # When they are summed by kind
    by_kind = threads.cpu_by_kind(events, cores=2)

    # Then each kind is its mean over the 20 s the last two instants close, in ms per s of
    # 2 cores, the numbered request handlers are one kind, and C1 is not C2
    assert by_kind == pytest.approx(
        {
            "data-plane-kafka-request-handler-N": 1000 * (0.2 + 0.1) * 10 * 2 / 20,
            "C2 CompilerThreadN": 1000 * (0.25 + 0.01) * 10 * 2 / 20,
            "C1 CompilerThreadN": 1000 * 0.05 * 10 * 2 / 20,
        }
    )
    assert list(by_kind)[0] == "data-plane-kafka-request-handler-N"

"""The broker probe's request-log summary, over lines in the broker's own format."""

from __future__ import annotations

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

"""The bench's hop table: where an order's time goes, up to its process's terminal time."""

from __future__ import annotations

from bench.hops import slowest_hops

PAID = [
    (1_000, "FinalizeCart"),
    (1_040, "CartFinalized"),
    (1_100, "InitOrder"),
    (1_300, "OrderCompleted"),
    (6_300, "SettlePayment"),  # the payment module's settlement delay, after the order is done
    (6_340, "PaymentSettled"),
]


def test_hops_after_the_terminal_record_are_left_out() -> None:
    # given an order whose process became terminal at 1,320 ms, and settled five seconds later
    records = {b"o-1": list(PAID)}

    # when its hops are ranked
    ranked = slowest_hops(records, {b"o-1": 1_320}, slowest=10)

    # then they end with the message that completed it; the settlement is not among them
    assert [h["hop"] for h in ranked] == [
        "InitOrder -> OrderCompleted",
        "CartFinalized -> InitOrder",
        "FinalizeCart -> CartFinalized",
    ]
    assert sum(h["mean_ms"] for h in ranked) == 300


def test_a_hop_taken_by_fewer_than_a_tenth_of_the_orders_is_not_ranked() -> None:
    # given eleven orders of which one took a detour
    records = {f"o-{i}".encode(): [(0, "FinalizeCart"), (50, "CartFinalized")] for i in range(10)}
    records[b"o-rare"] = [(0, "FinalizeCart"), (900, "CartRejected")]
    done = dict.fromkeys(records, 1_000)

    # when the hops are ranked
    ranked = slowest_hops(records, done, slowest=10)

    # then only the common one is, with its delay
    assert [(h["hop"], h["n"], h["p50_ms"]) for h in ranked] == [
        ("FinalizeCart -> CartFinalized", 10, 50)
    ]

"""The records every candidate drains, the one decision they all make, and the check.

Record ``j`` of ``n`` belongs to order ``j % orders`` and is that order's input number
``j // orders``: each order gets ``per_key`` inputs spread over the whole load, as the process
manager gets ~10 inputs per order. The state is a counter per order; each output says which
input it answers and what the counter became, so the check sees every input answered exactly
once, in order, and the changelog's last record per order gives the final state.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

PAD = "x" * 300  # brings the JSON value to ~400 bytes, like the process manager's inputs


def records(prefix: str, n: int, per_key: int) -> list[tuple[bytes, bytes]]:
    orders = max(1, n // per_key)
    out = []
    for j in range(n):
        key = f"{prefix}-{j % orders:07d}"
        value = {
            "type": "StepTaken",
            "order_id": key,
            "seq": j // orders,
            "message_id": f"{prefix}-m{j:08d}",
            "pad": PAD,
        }
        out.append((key.encode(), json.dumps(value, separators=(",", ":")).encode()))
    return out


def decide(state: bytes | None, value: bytes) -> tuple[bytes, bytes]:
    """The pure step: (state, input) -> (new state, output). Parses and writes JSON, as the
    process manager does; an input out of order is answered with ``in_order: false``."""
    message = json.loads(value)
    count = 0 if state is None else json.loads(state)["count"]
    seq = message["seq"]
    new = json.dumps({"count": count + 1, "last_seq": seq}, separators=(",", ":")).encode()
    output = {
        "type": "StepAnswered",
        "order_id": message["order_id"],
        "seq": seq,
        "count": count + 1,
        "in_order": seq == count,
        "causation_id": message["message_id"],
    }
    return new, json.dumps(output, separators=(",", ":")).encode()


@dataclass
class Verdict:
    outputs: int
    distinct_keys: int
    duplicates: int
    missing: int
    wrong_count: int
    state_keys: int
    state_wrong: int

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.missing or self.wrong_count or self.state_wrong)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def check(
    inputs: list[tuple[bytes, bytes]],
    outputs: list[tuple[bytes, bytes]],
    changelog: dict[bytes, bytes],
    echo: bool = False,
) -> Verdict:
    """Every input answered exactly once with the right counter, and the final per-key state.

    ``echo``: the existing minimal relay (bench/faust_relay.py) answers with the input itself
    and stores the last input; its state is right when it holds each order's last input."""
    expected: dict[bytes, set[int]] = defaultdict(set)
    for key, value in inputs:
        expected[key].add(json.loads(value)["seq"])
    seen: dict[bytes, list[int]] = defaultdict(list)
    wrong = 0
    for key, value in outputs:
        out = json.loads(value)
        seen[key].append(out["seq"])
        if not echo and (out["count"] != out["seq"] + 1 or not out["in_order"]):
            wrong += 1
    duplicates = sum(len(s) - len(set(s)) for s in seen.values())
    missing = sum(len(e - set(seen.get(k, ()))) for k, e in expected.items())
    state_wrong = 0
    for key, seqs in expected.items():
        raw = changelog.get(key)
        if raw is None:
            state_wrong += 1
            continue
        state = json.loads(raw)
        got = state["seq"] if echo else state["count"]
        if got != (max(seqs) if echo else len(seqs)):
            state_wrong += 1
    return Verdict(
        outputs=len(outputs),
        distinct_keys=len(seen),
        duplicates=duplicates,
        missing=missing,
        wrong_count=wrong,
        state_keys=len(changelog),
        state_wrong=state_wrong,
    )

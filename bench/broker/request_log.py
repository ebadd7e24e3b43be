"""Sums the broker's request log (``kafka.request.logger`` at DEBUG) by client and request."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

MARK = "Completed request:"


@dataclass
class Summary:
    by_client: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    partitions_per_produce: collections.Counter[int] = field(default_factory=collections.Counter)


def summarize(lines: Iterable[str]) -> Summary:
    """Requests per (client id, request name), and how many partitions each Produce carried."""
    decoder, summary = json.JSONDecoder(), Summary()
    for line in lines:
        if MARK not in line:
            continue
        # The JSON is followed by the logger's name in parentheses.
        entry, _ = decoder.raw_decode(line.split(MARK, 1)[1])
        header = entry["requestHeader"]
        name = header["requestApiKeyName"]
        summary.by_client[(header["clientId"], name)] += 1
        if name == "PRODUCE":
            topics = (entry.get("response") or {}).get("responses", [])
            summary.partitions_per_produce[
                sum(len(topic.get("partitionResponses", [])) for topic in topics)
            ] += 1
    return summary

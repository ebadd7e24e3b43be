"""(a2) Faust's per-event path with the spike's decision: ``table[key]`` read, decide,
``table[key] = state``, ``await sink.send`` per event. The same work as (b) and (c), at
Faust's per-event cost; (a) is bench/faust_relay.py itself (no read, no decision)."""

from __future__ import annotations

from typing import Any

from bench.spike.core import decide
from bench.spike.relay_app import make_app

app, source, sink, settings = make_app()
table = app.Table("relay", key_type=bytes, value_type=bytes, partitions=settings.topic_partitions)


@app.agent(source)
async def relay(stream: Any) -> None:
    async for event in stream.events():
        state, output = decide(table.get(event.key), event.value)
        table[event.key] = state
        await sink.send(key=event.key, value=output)

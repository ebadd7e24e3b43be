"""The minimal Faust table relay, the drain figure's Faust baseline (issue 12's table).

    RELAY_APP_ID=... RELAY_SOURCE=... RELAY_SINK=... python -m faust -A bench.faust_relay worker

One agent over one topic: ``table[key] = value`` on a RocksDB table with its changelog, then
``send`` to the sink topic. Plain Faust settings (none of streams/app.py's corrections), raw
bytes keys and values, on the broker and partition count of the project's settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faust

from streams.settings import get_settings

settings = get_settings()

app = faust.App(
    os.environ["RELAY_APP_ID"],
    broker=f"kafka://{settings.kafka_bootstrap_servers}",
    store="rocksdb://",
    datadir=str(Path(settings.data_dir) / "faust"),
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=settings.topic_replication_factor,
    key_serializer="raw",
    value_serializer="raw",
    producer_acks=-1,
    consumer_auto_offset_reset="earliest",
    web_bind=settings.web_bind,
    web_port=settings.web_port,
)
source = app.topic(os.environ["RELAY_SOURCE"], key_type=bytes, value_type=bytes)
sink = app.topic(os.environ["RELAY_SINK"], key_type=bytes, value_type=bytes)
table = app.Table("relay", key_type=bytes, value_type=bytes, partitions=settings.topic_partitions)


@app.agent(source)
async def relay(stream: Any) -> None:
    async for event in stream.events():
        table[event.key] = event.value
        await sink.send(key=event.key, value=event.value)

"""The Faust app every spike relay runs in: the settings of bench/faust_relay.py (plain Faust,
none of streams/kafka/app.py's corrections), raw bytes keys and values, a RocksDB table
``relay`` with its changelog, on the project's broker and partition count.

    RELAY_APP_ID=... RELAY_SOURCE=... RELAY_SINK=... python -m faust -A bench.spike.<module> worker
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faust

from streams.settings import Settings, get_settings


def make_app(**overrides: Any) -> tuple[faust.App, Any, Any, Settings]:
    """The app, its source and sink topics, and the settings it was made from."""
    settings = get_settings()
    options: dict[str, Any] = {
        "broker": f"kafka://{settings.kafka_bootstrap_servers}",
        "store": "rocksdb://",
        "datadir": str(Path(settings.data_dir) / "faust"),
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": settings.topic_replication_factor or 1,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "producer_acks": -1,
        "consumer_auto_offset_reset": "earliest",
        "web_bind": settings.web_bind,
        "web_port": settings.web_port,
        **overrides,
    }
    if "RELAY_PRODUCER_LINGER_S" in os.environ:  # Faust's default is 0
        options["producer_linger"] = float(os.environ["RELAY_PRODUCER_LINGER_S"])
    app = faust.App(os.environ["RELAY_APP_ID"], **options)
    source = app.topic(os.environ["RELAY_SOURCE"], key_type=bytes, value_type=bytes)
    sink = app.topic(os.environ["RELAY_SINK"], key_type=bytes, value_type=bytes)
    return app, source, sink, settings

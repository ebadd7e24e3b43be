"""A minimal Faust app for the foundation proof: consume, count in a RocksDB table, emit.

Run as a real worker: `faust -A tests.integration.probe_app worker`. Topic names and the app id
come from PROBE_* environment variables so each test run is isolated.
"""

from __future__ import annotations

import os

from streams.kafka.app import create_app
from streams.observability.logs import configure_logging
from streams.settings import get_settings

settings = get_settings()
configure_logging(settings.log_format, settings.log_level)

app = create_app(settings, app_id=os.environ["PROBE_APP_ID"])
source = app.topic(os.environ["PROBE_SOURCE"], key_type=bytes, value_type=bytes)
sink = app.topic(os.environ["PROBE_SINK"], key_type=bytes, value_type=bytes)
counts = app.Table("counts", default=int, key_type=bytes, value_type=int)


@app.agent(source, concurrency=1)
async def count(stream):  # type: ignore[no-untyped-def]
    async for key, value in stream.items():
        counts[key] += 1
        await sink.send(key=key, value=f"{value.decode()}:{counts[key]}".encode())

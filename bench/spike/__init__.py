"""Issue 12 part 2's spike: the process manager's hot path past Faust's per-event ceiling.

Minimal relays of one shape (consume ~400-byte JSON records keyed by order id over 8
partitions, read-modify-write a per-key counter in a Faust RocksDB table, produce one output
per input), each a Faust worker of its own, measured one after another on the same records by
``python -m bench.spike``. A measurement, not the feature: see README.md here.
"""

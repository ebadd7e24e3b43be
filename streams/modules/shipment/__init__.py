"""The shipment module: a CRUD module in PostgreSQL that publishes through an outbox.

- ``reservation`` and ``cancellation``: the pure rules (all or nothing, never negative; a
  package or a cancellation, never both).
- ``decisions``: one decision per command (gather, decide, apply) in the open transaction.
- ``store``: the SQL of those transactions, the stock commands.
- ``handler``: consumes ``shipments.commands``, one DB transaction per batch; ``poison`` tells
  a command the database refuses from a database that is away.
- ``outbox``: the relay that publishes the outbox to Kafka.
- ``cli``: ``python -m streams.modules.shipment``.
"""

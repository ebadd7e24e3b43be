"""The shipment module: a CRUD module in PostgreSQL that publishes through an outbox.

- ``reservation``: the pure rule (all or nothing, never negative).
- ``store``: the SQL of one command's transaction, the stock commands.
- ``handler``: consumes ``shipments.commands``, one DB transaction per command.
- ``outbox``: the relay that publishes the outbox to Kafka.
- ``cli``: ``python -m streams.modules.shipment``.
"""

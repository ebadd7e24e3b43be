"""The modules a process commands: cart, order and payment (event-sourced), shipment (CRUD)."""

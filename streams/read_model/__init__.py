"""The read model: the events topics projected into PostgreSQL's ``orders_view``."""

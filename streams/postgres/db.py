"""Connections to the project's database."""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow

Connection = psycopg.Connection[TupleRow]


def connect(database_url: str) -> Connection:
    """A connection where each unit of work is an explicit ``with conn.transaction():``."""
    return psycopg.connect(database_url, autocommit=True, connect_timeout=10)

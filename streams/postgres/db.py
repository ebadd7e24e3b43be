"""Connections to the project's database."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg.rows import TupleRow

Connection = psycopg.Connection[TupleRow]


def connect(database_url: str) -> Connection:
    """A connection where each unit of work is an explicit ``with conn.transaction():``."""
    return psycopg.connect(database_url, autocommit=True, connect_timeout=10)


class LazyConnection:
    """One connection, opened on first use and again after it was closed or reset."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: Connection | None = None

    def get(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.database_url)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    """``rows`` as ``width`` lists, one per column: the arrays of an ``INSERT ... SELECT * FROM
    unnest(%s::type[], ...)``, which writes a batch in one statement, not one per row."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width

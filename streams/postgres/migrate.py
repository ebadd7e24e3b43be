"""Apply the plain-SQL migrations in ``migrations/`` in file-name order, each exactly once.

Each file ``NNN_name.sql`` runs in its own transaction together with its row in
``schema_migrations``. A session-level advisory lock serializes workers that start at the same
time, so running ``migrate`` concurrently or repeatedly is safe. A migration that changed after
it was applied is refused: write a new one instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import psycopg

# pg_advisory_lock takes a bigint; this one is reserved for orderflow's migrations.
MIGRATION_LOCK = 0x6F7264666C6F77  # "ordflow"


class MigrationError(RuntimeError):
    """The database's applied migrations do not match the files."""


@dataclass(frozen=True)
class Migration:
    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    """Every migration file, in the order it applies."""
    folder = resources.files("streams.postgres") / "migrations"
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [Migration(entry.name.removesuffix(".sql"), entry.read_text()) for entry in files]


def migrate(database_url: str) -> list[str]:
    """Apply the pending migrations; return the versions applied now (empty when up to date)."""
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            conn.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    text PRIMARY KEY,
                    checksum   text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            applied: dict[str, str] = {
                str(version): str(checksum)
                for version, checksum in conn.execute(
                    "SELECT version, checksum FROM schema_migrations"
                )
            }
            for migration in migrations():
                if migration.version in applied:
                    if applied[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version} changed after it was applied"
                        )
                    continue
                with conn.transaction():
                    # No parameters: psycopg sends the file as one multi-statement query.
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                        (migration.version, migration.checksum),
                    )
                applied_now.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied_now

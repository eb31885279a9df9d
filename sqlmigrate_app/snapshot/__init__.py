"""A database's schema as canonical, sorted text, read from its catalog: what ``sqlmigrate_verify``
compares and ``sqlmigrate_dump`` writes.

Not ``pg_dump``, whose version must match the server's: a handful of set-based catalog queries
(never one per table), each object a block of lines keyed by its kind and qualified name. Two
databases built by the same migrations give the same text: no OIDs, no database name, no owners
or privileges (roles differ between environments), no data. The history table is left out.
One reader per database (:mod:`.postgresql`, :mod:`.sqlite`).
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from .model import Change, Reader, SchemaObject, Snapshot
from .postgresql import PostgresReader
from .sqlite import SQLiteReader

__all__ = ["Change", "Reader", "SchemaObject", "Snapshot", "reader_for", "take"]


def reader_for(connection: BaseDatabaseWrapper, history_table: str) -> Reader:
    """A reader of ``connection``'s schema. Keep it to take several snapshots of one database:
    PostgreSQL's re-reads only what changed since the last one."""
    if connection.vendor == "postgresql":
        return PostgresReader(connection, history_table)
    if connection.vendor == "sqlite":
        return SQLiteReader(connection, history_table)
    raise NotImplementedError(f"schema snapshots are for PostgreSQL and SQLite, not {connection.vendor}")


def take(connection: BaseDatabaseWrapper, history_table: str) -> Snapshot:
    """The schema of ``connection``'s database now, without the history table ``history_table``."""
    return reader_for(connection, history_table).take()

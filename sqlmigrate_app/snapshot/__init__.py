"""A database's schema as canonical, sorted text, read from its catalog: what ``sqlmigrate_verify``
compares and ``sqlmigrate_dump`` writes.

Not ``pg_dump``, whose version must match the server's: a handful of set-based catalog queries
(never one per table), each object a block of lines keyed by its kind and qualified name. Two
databases built by the same migrations give the same text: no OIDs, no database name, no owners
or privileges (roles differ between environments), no data. The history table is left out.
One reader per database (:mod:`.postgresql`, :mod:`.sqlite`), chosen by its backend.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from .model import Change, ChangeKind, Reader, SchemaObject, Snapshot

__all__ = ["Change", "ChangeKind", "Reader", "SchemaObject", "Snapshot", "reader_for", "take"]


def reader_for(connection: BaseDatabaseWrapper, history_table: str) -> Reader:
    """A reader of ``connection``'s schema, the one its backend names. Keep it to take several
    snapshots of one database: PostgreSQL's re-reads only what changed since the last one."""
    from ..backends import backend_for  # the backends import the readers

    return backend_for(connection).schema_reader(history_table)


def take(connection: BaseDatabaseWrapper, history_table: str) -> Snapshot:
    """The schema of ``connection``'s database now, without the history table ``history_table``."""
    return reader_for(connection, history_table).take()

"""Database backends: one per database, chosen by the connection's vendor."""

from __future__ import annotations

from collections.abc import Callable

from django.db.backends.base.base import BaseDatabaseWrapper

from .base import Backend, GenericBackend, StatementError, TransactionEnded, driver_error
from .postgresql import PostgresBackend
from .sqlite import SQLiteBackend

__all__ = ["Backend", "StatementError", "TransactionEnded", "backend_for", "driver_error"]

BACKENDS: dict[str, Callable[[BaseDatabaseWrapper], Backend]] = {
    "postgresql": PostgresBackend,
    "sqlite": SQLiteBackend,
}


def backend_for(connection: BaseDatabaseWrapper) -> Backend:
    """The backend of ``connection``'s database (:class:`GenericBackend` for one without its own)."""
    return BACKENDS.get(connection.vendor, GenericBackend)(connection)

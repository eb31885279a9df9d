"""Database backends: one module per database, registered here by the Django vendor it serves."""

from __future__ import annotations

from collections.abc import Callable

from django.db.backends.base.base import BaseDatabaseWrapper

from ..errors import ConfigurationError
from .base import (
    Backend,
    BatchEnd,
    Block,
    HistoryName,
    HistoryRows,
    StatementError,
    TenantRows,
    ThrowawayPlace,
    TransactionEnded,
    driver_error,
)
from .postgresql import PostgresBackend
from .sqlite import SQLiteBackend

__all__ = [
    "Backend",
    "BatchEnd",
    "Block",
    "HistoryName",
    "HistoryRows",
    "StatementError",
    "TenantRows",
    "ThrowawayPlace",
    "TransactionEnded",
    "backend_for",
    "driver_error",
]

BACKENDS: dict[str, Callable[[BaseDatabaseWrapper], Backend]] = {
    "postgresql": PostgresBackend,
    "sqlite": SQLiteBackend,
}


def backend_for(connection: BaseDatabaseWrapper) -> Backend:
    """The backend of ``connection``'s database; a :class:`ConfigurationError` for a database
    sqlmigrate has none for (MySQL, Oracle, an alias without an ``ENGINE``)."""
    backend = BACKENDS.get(connection.vendor)
    if backend is None:
        engine = connection.settings_dict.get("ENGINE") or "none"
        raise ConfigurationError(
            f"database {connection.alias!r} is {connection.display_name} (ENGINE {engine}): sqlmigrate works on "
            "PostgreSQL and SQLite only; use it on an alias of one of those (--database, SQLMIGRATE_DIRS)"
        )
    return backend(connection)

"""The few things that differ between databases: locking, splitting, timeouts, error positions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from .errors import SqlMigrateError
from .files import Migration, Section
from .statements import Statement, split, split_sqlite


def driver_error(connection: BaseDatabaseWrapper) -> type[Exception]:
    """The DB-API ``Error`` class of the connection's driver (psycopg, sqlite3, ...)."""
    return connection.Database.Error  # type: ignore[attr-defined]


class LockTimeout(SqlMigrateError):
    """Another runner held the migration lock for longer than ``--lock-timeout``."""


class StatementError(Exception):
    """A database error while running a section, with the file line it came from (if known)."""

    def __init__(self, error: Exception, line: int | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.line = line


class Backend:
    """Defaults for any database: split with sqlparse, no run-wide lock, no timeouts."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection

    def raw_cursor(self) -> Any:
        """A DB-API cursor, bypassing Django's wrapper: no SQL logging, no ``%`` handling."""
        self.connection.ensure_connection()
        return self.connection.connection.cursor()

    @contextmanager
    def lock(self, table: str, timeout: float | None, on_wait: Callable[[], None]) -> Iterator[None]:
        yield

    def split(self, section: Section) -> list[Statement]:
        return split(section.sql, section.line)

    def run_section(self, cursor: Any, section: Section) -> None:
        """Run a section inside the current transaction, statement by statement."""
        self.run_statements(cursor, self.split(section))

    def run_statements(self, cursor: Any, statements: list[Statement], ran: list[Statement] | None = None) -> None:
        for statement in statements:
            try:
                cursor.execute(statement.sql)
            except driver_error(self.connection) as exc:
                raise StatementError(exc, statement.line) from exc
            if ran is not None:
                ran.append(statement)

    def set_timeouts(self, cursor: Any, migration: Migration, defaults: dict[str, str | None], local: bool) -> bool:
        """Apply the migration's timeouts; True when something must be reset afterwards."""
        return False

    def reset_timeouts(self, cursor: Any) -> None:
        pass

    def connection_lost(self) -> bool:
        raw = self.connection.connection
        return raw is None or bool(getattr(raw, "closed", False))


class PostgresBackend(Backend):
    @contextmanager
    def lock(self, table: str, timeout: float | None, on_wait: Callable[[], None]) -> Iterator[None]:
        """A session-level advisory lock, so it also covers ``no-transaction`` migrations."""
        cursor = self.raw_cursor()
        cursor.execute("SELECT current_schema()")
        digest = hashlib.blake2b(f"sqlmigrate:{cursor.fetchone()[0]}.{table}".encode(), digest_size=8)
        key = int.from_bytes(digest.digest(), "big", signed=True)
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        if not cursor.fetchone()[0]:
            on_wait()
            self._wait_for_lock(cursor, key, timeout)
        try:
            yield
        finally:
            if not self.connection_lost():
                self.raw_cursor().execute("SELECT pg_advisory_unlock(%s)", [key])

    def _wait_for_lock(self, cursor: Any, key: int, timeout: float | None) -> None:
        if timeout is None:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
            return
        cursor.execute(f"SET lock_timeout = '{int(timeout * 1000)}ms'")
        try:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
        except driver_error(self.connection) as exc:
            if getattr(exc, "sqlstate", None) == "55P03":
                raise LockTimeout(f"another runner held the migration lock for more than {timeout:g} s") from None
            raise
        finally:
            if not self.connection_lost():
                cursor.execute("RESET lock_timeout")

    def run_section(self, cursor: Any, section: Section) -> None:
        """The whole section in one round trip: the server parses it, as psql would."""
        try:
            cursor.execute(section.sql)
        except driver_error(self.connection) as exc:
            raise StatementError(exc, self._error_line(exc, section)) from exc

    @staticmethod
    def _error_line(exc: Exception, section: Section) -> int | None:
        position = getattr(getattr(exc, "diag", None), "statement_position", None)
        if not position:
            return None
        return section.line + section.sql.count("\n", 0, int(position) - 1)

    def set_timeouts(self, cursor: Any, migration: Migration, defaults: dict[str, str | None], local: bool) -> bool:
        scope = "SET LOCAL" if local else "SET"
        values = {
            "lock_timeout": migration.lock_timeout or defaults.get("lock_timeout"),
            "statement_timeout": migration.statement_timeout or defaults.get("statement_timeout"),
        }
        changed = False
        for setting, value in values.items():
            if value:
                # Values are checked against a strict duration pattern, so quoting is safe.
                cursor.execute(f"{scope} {setting} = '{value}'")
                changed = True
        return changed

    def reset_timeouts(self, cursor: Any) -> None:
        cursor.execute("RESET lock_timeout")
        cursor.execute("RESET statement_timeout")


class SQLiteBackend(Backend):
    @contextmanager
    def lock(self, table: str, timeout: float | None, on_wait: Callable[[], None]) -> Iterator[None]:
        """SQLite serialises writers itself; wait for them as long as the lock timeout allows.

        Each migration's transaction starts by writing its history row, so a second runner
        blocks there and then sees that the migration was already applied.
        """
        cursor = self.raw_cursor()
        cursor.execute("PRAGMA busy_timeout")
        previous = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA busy_timeout = {int((timeout if timeout is not None else 3600) * 1000)}")
        try:
            yield
        finally:
            if not self.connection_lost():
                self.raw_cursor().execute(f"PRAGMA busy_timeout = {int(previous)}")

    def split(self, section: Section) -> list[Statement]:
        return split_sqlite(section.sql, section.line)


def backend_for(connection: BaseDatabaseWrapper) -> Backend:
    return {"postgresql": PostgresBackend, "sqlite": SQLiteBackend}.get(connection.vendor, Backend)(connection)

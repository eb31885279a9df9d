"""The few things that differ between databases: locking, splitting, timeouts, error positions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from time import monotonic, sleep
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from .errors import SqlMigrateError
from .files import Migration, Section
from .statements import Statement, split, split_sqlite

try:
    import fcntl
except ImportError:  # Windows: SQLite runners rely on the history-row claim alone
    fcntl = None  # type: ignore[assignment]


def driver_error(connection: BaseDatabaseWrapper) -> type[Exception]:
    """The DB-API ``Error`` class of the connection's driver (psycopg, sqlite3, ...)."""
    return connection.Database.Error  # type: ignore[attr-defined]


class LockTimeout(SqlMigrateError):
    """Another runner held the migration lock for longer than ``--lock-timeout``."""


class StatementError(Exception):
    """A database error while running a section, with the file line it came from (if known).

    ``in_prelude`` when one of the statements sent ahead of the section failed, not the section.
    """

    def __init__(self, error: Exception, line: int | None, in_prelude: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.line = line
        self.in_prelude = in_prelude


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

    def run_section(self, cursor: Any, section: Section, prelude: Sequence[str] = ()) -> None:
        """Run the ``prelude`` statements, then the section, inside the current transaction,
        statement by statement."""
        for sql in prelude:
            try:
                cursor.execute(sql)
            except driver_error(self.connection) as exc:
                raise StatementError(exc, None, in_prelude=True) from exc
        self.run_statements(cursor, self.split(section))

    def run_statements(self, cursor: Any, statements: list[Statement], ran: list[Statement] | None = None) -> None:
        for statement in statements:
            try:
                cursor.execute(statement.sql)
            except driver_error(self.connection) as exc:
                raise StatementError(exc, statement.line) from exc
            if ran is not None:
                ran.append(statement)

    def timeout_statements(self, migration: Migration, defaults: dict[str, str | None], local: bool) -> list[str]:
        """The statements that apply the migration's timeouts (none where there are none)."""
        return []

    def set_timeouts(self, cursor: Any, migration: Migration, defaults: dict[str, str | None], local: bool) -> bool:
        """Apply the migration's timeouts; True when something must be reset afterwards."""
        statements = self.timeout_statements(migration, defaults, local)
        for sql in statements:
            cursor.execute(sql)
        return bool(statements)

    def reset_timeouts(self, cursor: Any) -> None:
        pass

    def connection_lost(self, error: Exception | None = None) -> bool:
        """True when the connection is gone, or ``error`` says the server is ending it
        (``pg_terminate_backend``, shutdown: the socket may not be seen closed yet)."""
        sqlstate = str(getattr(error, "sqlstate", None) or "")
        if sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03"):
            return True
        raw = self.connection.connection
        return raw is None or bool(getattr(raw, "closed", False) or getattr(raw, "broken", False))


def advisory_lock_key(schema: str, table: str) -> int:
    """The ``pg_advisory_lock`` key of the runners of one history table: a signed 64-bit hash."""
    digest = hashlib.blake2b(f"sqlmigrate:{schema}.{table}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class PostgresBackend(Backend):
    @contextmanager
    def lock(self, table: str, timeout: float | None, on_wait: Callable[[], None]) -> Iterator[None]:
        """A session-level advisory lock, so it also covers ``no-transaction`` migrations."""
        cursor = self.raw_cursor()
        cursor.execute("SELECT current_schema()")
        key = advisory_lock_key(cursor.fetchone()[0], table)
        self._notice_dead_client(cursor)
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        if not cursor.fetchone()[0]:
            on_wait()
            self._wait_for_lock(cursor, key, timeout)
        try:
            yield
        finally:
            if not self.connection_lost():
                self.raw_cursor().execute("SELECT pg_advisory_unlock(%s)", [key])

    def _notice_dead_client(self, cursor: Any) -> None:
        """Have the server end this session within a second of the client dying (PostgreSQL 14+
        on Linux), so a runner killed during a long statement does not keep the lock until the
        statement ends."""
        if getattr(self.connection, "pg_version", 0) < 140000:
            return
        try:
            cursor.execute("SET client_connection_check_interval = '1s'")
        except driver_error(self.connection):
            pass  # a platform without the kernel support: the lock lasts until the statement ends

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

    def run_section(self, cursor: Any, section: Section, prelude: Sequence[str] = ()) -> None:
        """The prelude and the whole section in one round trip: the server parses it, as psql
        would. When the transaction has not begun yet, its BEGIN travels with them too."""
        head = "".join(f"{sql};\n" for sql in [*self._begin(), *prelude])
        try:
            cursor.execute(head + section.sql if head else section.sql)
        except driver_error(self.connection) as exc:
            position = int(getattr(getattr(exc, "diag", None), "statement_position", None) or 0)
            if position and position <= len(head):
                raise StatementError(exc, None, in_prelude=True) from exc
            raise StatementError(exc, self._error_line(exc, section, len(head))) from exc

    def _begin(self) -> list[str]:
        """The BEGIN psycopg would send on its own, in a round trip of its own, before the
        first statement of a transaction (same options: isolation level, read only, deferrable)."""
        raw = self.connection.connection
        if raw.autocommit or raw.info.transaction_status.name != "IDLE":
            return []
        parts = ["BEGIN"]
        if raw.isolation_level is not None:
            parts.append(f"ISOLATION LEVEL {raw.isolation_level.name.replace('_', ' ')}")
        if raw.read_only is not None:
            parts.append("READ ONLY" if raw.read_only else "READ WRITE")
        if raw.deferrable is not None:
            parts.append("DEFERRABLE" if raw.deferrable else "NOT DEFERRABLE")
        return [" ".join(parts)]

    @staticmethod
    def _error_line(exc: Exception, section: Section, offset: int = 0) -> int | None:
        """The file line of the server's error position, ``offset`` characters sent ahead."""
        position = int(getattr(getattr(exc, "diag", None), "statement_position", None) or 0) - offset
        if position <= 0:
            return None
        return section.line + section.sql.count("\n", 0, position - 1)

    def timeout_statements(self, migration: Migration, defaults: dict[str, str | None], local: bool) -> list[str]:
        scope = "SET LOCAL" if local else "SET"
        values = {
            "lock_timeout": migration.lock_timeout or defaults.get("lock_timeout"),
            "statement_timeout": migration.statement_timeout or defaults.get("statement_timeout"),
        }
        # Values are checked against a strict duration pattern, so quoting is safe.
        return [f"{scope} {setting} = '{value}'" for setting, value in values.items() if value]

    def reset_timeouts(self, cursor: Any) -> None:
        cursor.execute("RESET lock_timeout")
        cursor.execute("RESET statement_timeout")


class SQLiteBackend(Backend):
    @contextmanager
    def lock(self, table: str, timeout: float | None, on_wait: Callable[[], None]) -> Iterator[None]:
        """A whole-run lock like PostgreSQL's: ``flock`` on a file next to the database.

        SQLite's own locks only last one transaction, so without this a ``down`` could undo a
        migration between two of a concurrent ``up``'s. As a second line of defence each
        migration's transaction starts by writing its history row, so two runners that get
        past the lock (a database file on a filesystem without ``flock``) still never apply a
        migration twice. Writers that are not sqlmigrate are waited for through busy_timeout.
        """
        with self._run_lock(table, timeout, on_wait):
            cursor = self.raw_cursor()
            cursor.execute("PRAGMA busy_timeout")
            previous = cursor.fetchone()[0]
            cursor.execute(f"PRAGMA busy_timeout = {int((timeout if timeout is not None else 3600) * 1000)}")
            try:
                yield
            finally:
                if not self.connection_lost():
                    self.raw_cursor().execute(f"PRAGMA busy_timeout = {int(previous)}")

    def lock_path(self, table: str) -> Path | None:
        """``<database>.<table>.lock``; None for an in-memory database (nothing to share)."""
        name = str(self.connection.settings_dict["NAME"] or "")
        if not name or name == ":memory:" or "mode=memory" in name or name.startswith("file:"):
            return None
        return Path(f"{name}.{table}.lock")

    @contextmanager
    def _run_lock(self, table: str, timeout: float | None, on_wait: Callable[[], None]) -> Iterator[None]:
        path = self.lock_path(table)
        if path is None or fcntl is None:
            yield
            return
        with open(path, "a") as handle:
            if not self._try_flock(handle):
                on_wait()
                deadline = None if timeout is None else monotonic() + timeout
                while not self._try_flock(handle):
                    if deadline is not None and monotonic() > deadline:
                        raise LockTimeout(f"another runner held the migration lock for more than {timeout:g} s")
                    sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _try_flock(handle: Any) -> bool:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def split(self, section: Section) -> list[Statement]:
        return split_sqlite(section.sql, section.line)


def backend_for(connection: BaseDatabaseWrapper) -> Backend:
    return {"postgresql": PostgresBackend, "sqlite": SQLiteBackend}.get(connection.vendor, Backend)(connection)

"""The interface sqlmigrate needs of a database, and what every database shares.

One subclass per database (:mod:`.postgresql`, :mod:`.sqlite`) says how to lock a run, split
SQL into statements, run a section with the statements sent ahead of it, and keep the session's
settings; :class:`GenericBackend` serves any other Django database statement by statement.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from ..files import Migration, Section
from ..statements import Statement, split


def driver_error(connection: BaseDatabaseWrapper) -> type[Exception]:
    """The DB-API ``Error`` class of the connection's driver (psycopg, sqlite3, ...)."""
    error: type[Exception] = connection.Database.Error  # type: ignore[attr-defined]
    return error


class StatementError(Exception):
    """A database error while running a section, with the file line it came from (if known).

    ``in_prelude`` when one of the statements sent ahead of the section failed, not the section.
    """

    def __init__(self, error: Exception, line: int | None, in_prelude: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.line = line
        self.in_prelude = in_prelude


class Backend(ABC):
    """What sqlmigrate needs of a database. The concrete methods run any DB-API database
    statement by statement; a subclass overrides what its database does better."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection

    def raw_cursor(self) -> Any:
        """A DB-API cursor, bypassing Django's wrapper: no SQL logging, no ``%`` handling."""
        self.connection.ensure_connection()
        return self.connection.connection.cursor()

    # The run -------------------------------------------------------------------------------

    def history_schema(self) -> str | None:
        """The schema the history table lives in for this run (None: the database has no schemas)."""
        return None

    @abstractmethod
    def lock(
        self, schema: str | None, table: str, timeout: float | None, on_wait: Callable[[], None]
    ) -> AbstractContextManager[None]:
        """Hold the run-wide lock of one history table while the context is open; call
        ``on_wait`` once if another runner has it, and raise ``LockTimeout`` after ``timeout``
        seconds (None: wait as long as it takes)."""

    # Statements ----------------------------------------------------------------------------

    @abstractmethod
    def split(self, section: Section) -> list[Statement]:
        """The section's statements, each with its file line, as this database reads them."""

    def run_section(
        self, cursor: Any, section: Section, prelude: Sequence[str] = (), may_commit: bool = False
    ) -> list[int]:
        """Run the ``prelude`` statements, then the section, inside the current transaction,
        statement by statement; return the rows each prelude statement touched. With
        ``may_commit`` nothing else will run in this transaction, so a backend may commit it
        (Django's own commit then finds nothing to do). Raises :class:`StatementError`."""
        rows = self.run_prelude(cursor, prelude)
        self.run_statements(cursor, self.split(section))
        return rows

    def execute(self, cursor: Any, sql: str) -> None:
        """Run ``sql`` on its own; raise the driver's error."""
        cursor.execute(sql)

    def run_prelude(self, cursor: Any, prelude: Sequence[str]) -> list[int]:
        """Run the statements sent ahead of a section; the rows each touched."""
        rows = []
        for sql in prelude:
            try:
                cursor.execute(sql)
            except driver_error(self.connection) as exc:
                raise StatementError(exc, None, in_prelude=True) from exc
            rows.append(cursor.rowcount)
        return rows

    def run_statements(self, cursor: Any, statements: list[Statement], ran: list[Statement] | None = None) -> None:
        """Run statements one by one, appending each that succeeded to ``ran``."""
        for statement in statements:
            try:
                self.execute(cursor, statement.sql)
            except driver_error(self.connection) as exc:
                raise StatementError(exc, statement.line) from exc
            if ran is not None:
                ran.append(statement)

    def timeout_statements(self, migration: Migration, defaults: dict[str, str | None], local: bool) -> list[str]:
        """The statements that apply the migration's timeouts (none where there are none)."""
        return []

    def set_timeouts(self, cursor: Any, migration: Migration, defaults: dict[str, str | None]) -> None:
        """Apply the migration's timeouts to the session (a ``no-transaction`` migration); the
        runner puts the session back afterwards, see :meth:`session_state`."""
        for sql in self.timeout_statements(migration, defaults, local=False):
            cursor.execute(sql)

    # The session ---------------------------------------------------------------------------

    @abstractmethod
    def session_state(self) -> Any:
        """What :meth:`restore_session` needs to undo a migration's session-level settings
        (``SET``, ``set_config``, ``PRAGMA``), as the run found them."""

    @abstractmethod
    def restore_session(self, state: Any) -> None:
        """Put the session's settings back as :meth:`session_state` found them."""

    def reset_session(self) -> None:
        """Leave nothing of this session to the next statement: no temporary table, prepared
        statement, setting, lock or ``ATTACH``, as if a new command had connected (what verify
        does between the steps it checks). Here: close the connection; the next query opens one."""
        self.connection.close()

    def in_transaction(self) -> bool:
        """Whether the session is inside a transaction (a ``no-transaction`` migration's own
        ``BEGIN``) that a failure left open."""
        return bool(getattr(self.connection.connection, "in_transaction", False))  # sqlite3's

    def connection_lost(self, error: Exception | None = None) -> bool:
        """True when the connection is gone, or ``error`` says the server is ending it
        (``pg_terminate_backend``, shutdown: the socket may not be seen closed yet). A
        connection error of another connection the SQL makes (``CREATE SUBSCRIPTION``,
        ``dblink``) is an ordinary error: this session goes on."""
        if getattr(error, "sqlstate", None) in ("57P01", "57P02", "57P03"):
            return True
        raw = self.connection.connection
        return raw is None or bool(getattr(raw, "closed", False) or getattr(raw, "broken", False))


class GenericBackend(Backend):
    """Any other Django database: no run-wide lock, statements split by sqlmigrate's scanner,
    no session settings kept."""

    @contextmanager
    def lock(
        self, schema: str | None, table: str, timeout: float | None, on_wait: Callable[[], None]
    ) -> Iterator[None]:
        """No run-wide lock: concurrent runners rely on the history row alone."""
        yield

    def split(self, section: Section) -> list[Statement]:
        """Statements as PostgreSQL's lexical rules read them, the closest common ground."""
        return split(section.sql, section.line)

    def session_state(self) -> None:
        """Nothing is kept."""
        return None

    def restore_session(self, state: Any) -> None:
        """Nothing to put back."""
        pass

"""The few things that differ between databases: locking, splitting, timeouts, error positions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from time import monotonic, sleep
from typing import Any, NamedTuple

from django.db.backends.base.base import BaseDatabaseWrapper

from .errors import SqlMigrateError
from .files import Migration, Section
from .statements import Statement, mentions, split, split_sqlite

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


class SessionState(NamedTuple):
    """A PostgreSQL session's user, role and own settings (``(name, value)`` pairs)."""

    user: str
    role: str
    settings: tuple[tuple[str, str], ...]


def _literal(value: str) -> str:
    """An E'' string literal of ``value``."""
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class Backend:
    """Defaults for any database: split with our own scanner (statements.py), no run-wide lock, no timeouts."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection

    def raw_cursor(self) -> Any:
        """A DB-API cursor, bypassing Django's wrapper: no SQL logging, no ``%`` handling."""
        self.connection.ensure_connection()
        return self.connection.connection.cursor()

    def history_schema(self) -> str | None:
        """The schema the history table lives in for this run (None: the database has no schemas)."""
        return None

    @contextmanager
    def lock(
        self, schema: str | None, table: str, timeout: float | None, on_wait: Callable[[], None]
    ) -> Iterator[None]:
        yield

    def split(self, section: Section) -> list[Statement]:
        return split(section.sql, section.line)

    def run_section(self, cursor: Any, section: Section, prelude: Sequence[str] = (), last: bool = False) -> list[int]:
        """Run the ``prelude`` statements, then the section, inside the current transaction,
        statement by statement; return the rows each prelude statement touched. ``last``:
        nothing else will run in this transaction, so a backend may commit it (Django's own
        commit then finds nothing to do)."""
        rows = self.run_prelude(cursor, prelude)
        self.run_statements(cursor, self.split(section))
        return rows

    def run_prelude(self, cursor: Any, prelude: Sequence[str]) -> list[int]:
        rows = []
        for sql in prelude:
            try:
                cursor.execute(sql)
            except driver_error(self.connection) as exc:
                raise StatementError(exc, None, in_prelude=True) from exc
            rows.append(cursor.rowcount)
        return rows

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

    def set_timeouts(self, cursor: Any, migration: Migration, defaults: dict[str, str | None]) -> None:
        """Apply the migration's timeouts to the session (a ``no-transaction`` migration); the
        runner puts the session back afterwards, see :meth:`session_state`."""
        for sql in self.timeout_statements(migration, defaults, local=False):
            cursor.execute(sql)

    def session_state(self) -> Any:
        """What :meth:`restore_session` needs to undo a migration's session-level settings
        (``SET``, ``set_config``, ``PRAGMA``): none here."""
        return None

    def restore_session(self, state: Any) -> None:
        """Put the session's settings back as :meth:`session_state` found them."""

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


def advisory_lock_key(schema: str, table: str) -> int:
    """The ``pg_advisory_lock`` key of the runners of one history table: a signed 64-bit hash."""
    digest = hashlib.blake2b(f"sqlmigrate:{schema}.{table}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class PostgresBackend(Backend):
    def history_schema(self) -> str:
        """The connection's current schema when the run starts: the history table is named with
        it, so a migration that changes ``search_path`` cannot lose it."""
        cursor = self.raw_cursor()
        cursor.execute("SELECT pg_catalog.current_schema()")
        schema = cursor.fetchone()[0]
        if schema is None:
            raise SqlMigrateError(
                f"database {self.connection.alias!r}: its search_path names no existing schema, so there is no "
                "schema for the history table; set search_path (e.g. OPTIONS 'options': '-c search_path=public')"
            )
        return str(schema)

    @contextmanager
    def lock(
        self, schema: str | None, table: str, timeout: float | None, on_wait: Callable[[], None]
    ) -> Iterator[None]:
        """A session-level advisory lock, so it also covers ``no-transaction`` migrations."""
        cursor = self.raw_cursor()
        key = advisory_lock_key(schema or "", table)
        with self._notice_dead_client(cursor):
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            if not cursor.fetchone()[0]:
                on_wait()
                self._wait_for_lock(cursor, key, timeout)
            try:
                yield
            finally:
                if not self.connection_lost():
                    self.raw_cursor().execute("SELECT pg_advisory_unlock(%s)", [key])

    @contextmanager
    def _notice_dead_client(self, cursor: Any) -> Iterator[None]:
        """Have the server end this session within a second of the client dying (PostgreSQL 14+
        on Linux), so a runner killed during a long statement does not keep the lock until the
        statement ends. The setting is reset afterwards: the session may be the app's own."""
        checking = getattr(self.connection, "pg_version", 0) >= 140000
        if checking:
            try:
                cursor.execute("SET client_connection_check_interval = '1s'")
            except driver_error(self.connection):
                checking = False  # no kernel support: the lock lasts until the statement ends
        try:
            yield
        finally:
            if checking and not self.connection_lost():
                self.raw_cursor().execute("RESET client_connection_check_interval")

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

    def run_section(self, cursor: Any, section: Section, prelude: Sequence[str] = (), last: bool = False) -> list[int]:
        """The prelude and the whole section in one round trip: the server parses it, as psql
        would. When the transaction has not begun yet, its BEGIN travels with them too, and
        if it is also ``last``, so does its COMMIT: one round trip for the whole migration."""
        conn = self._psycopg_connection()
        if conn is None:  # psycopg2: no libpq access; its execute() keeps only the last result
            rows = self.run_prelude(cursor, prelude)
            try:
                cursor.execute(section.sql)
            except driver_error(self.connection) as exc:
                raise StatementError(exc, self._error_line(exc, section)) from exc
            return rows
        with conn.lock:
            begin = self._begin(conn)
            head = [*begin, *prelude]
            text = "".join(f"{sql};\n" for sql in head)
            rows = []
            commit = ""
            if len(section.sql) > ALONE_ABOVE:
                # Gluing BEGIN and the rest to a big section would copy it once more; one round
                # trip saved is nothing next to its run time. The section goes alone.
                if text:
                    error, _, rows = self._simple_query(conn, text, counted=len(head))
                    if error is not None:
                        raise StatementError(error, None, in_prelude=True) from error
                head, text = [], ""
            elif begin and last and not mentions(section.sql, ("copy",)):
                # COPY is the one statement the server completes that we then fail (see
                # COPY_REFUSED): its transaction must not be committed in the same round trip.
                commit = "\n;\nCOMMIT"
            error, failed_at, head_rows = self._simple_query(conn, text + section.sql + commit, counted=len(head))
            rows += head_rows
        if error is None:
            return rows[len(begin) :]
        # A syntax error stops the server before it runs anything, so where it is comes from its
        # position; any other error is placed by counting the results before it, one per
        # statement: the section is never run a second time to find the line.
        position = int(getattr(getattr(error, "diag", None), "statement_position", None) or 0)
        if (position <= len(text)) if position else (failed_at < len(head)):
            raise StatementError(error, None, in_prelude=True) from error
        if position:
            raise StatementError(error, self._error_line(error, section, len(text))) from error
        raise StatementError(error, self._line_of_statement(section, failed_at - len(head))) from error

    def run_statements(self, cursor: Any, statements: list[Statement], ran: list[Statement] | None = None) -> None:
        for statement in statements:
            try:
                self._send(statement.sql)
            except driver_error(self.connection) as exc:
                raise StatementError(exc, statement.line) from exc
            if ran is not None:
                ran.append(statement)

    def in_transaction(self) -> bool:
        conn = self._psycopg_connection()
        if conn is None:  # psycopg2: libpq's PQTRANS_IDLE is 0
            return bool(self.connection.connection.get_transaction_status() != 0)
        return bool(conn.info.transaction_status.name != "IDLE")

    def _psycopg_connection(self) -> Any:
        """The psycopg 3 connection under Django's, or None for psycopg2."""
        self.connection.ensure_connection()
        conn = self.connection.connection
        return conn if hasattr(conn, "pgconn") else None

    @staticmethod
    def _simple_query(conn: Any, sql: str, counted: int = 0) -> tuple[Exception | None, int, list[int]]:
        """Send ``sql`` in one simple-query message and read its results one at a time, dropping
        each (``cursor.execute`` would hold one per statement until the last arrived); return
        the first error, how many results came before it and the rows touched by each of the
        first ``counted`` statements. Call with ``conn.lock`` held.

        The I/O goes through ``Connection.wait``, which cancels the query on Ctrl-C.
        """
        encoding = conn.info.encoding
        outcome: tuple[Exception | None, int, list[int]] = conn.wait(
            _simple_query_gen(conn.pgconn, sql.encode(encoding), encoding, counted)
        )
        return outcome

    @staticmethod
    def _begin(conn: Any) -> list[str]:
        """The BEGIN psycopg would send in a round trip of its own before the first statement of
        a transaction (with the same options: isolation level, read only, deferrable)."""
        if conn.autocommit or conn.info.transaction_status.name != "IDLE":
            return []
        parts = ["BEGIN"]
        if conn.isolation_level is not None:
            parts.append(f"ISOLATION LEVEL {conn.isolation_level.name.replace('_', ' ')}")
        if conn.read_only is not None:
            parts.append("READ ONLY" if conn.read_only else "READ WRITE")
        if conn.deferrable is not None:
            parts.append("DEFERRABLE" if conn.deferrable else "NOT DEFERRABLE")
        return [" ".join(parts)]

    def _line_of_statement(self, section: Section, index: int) -> int | None:
        """The file line of the section's statement number ``index`` (from 0), as our scanner
        splits it; None past the last one (an error at COMMIT, such as a deferred constraint)."""
        statements = self.split(section)
        return statements[index].line if index < len(statements) else None

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

    def session_state(self) -> SessionState:
        """The session's own settings (source ``session``: set by Django or the app on connect)
        and its user and role, as the run found them."""
        cursor = self.raw_cursor()
        cursor.execute("SELECT pg_catalog.current_setting('session_authorization'), pg_catalog.current_setting('role')")
        user, role = cursor.fetchone()
        cursor.execute(
            "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' AND name NOT LIKE 'transaction%'"
        )
        return SessionState(user, role, tuple(cursor.fetchall()))

    def restore_session(self, state: SessionState) -> None:
        """One round trip: user first (it resets the role), then role, then every setting that
        differs from the run's: back to the run's value, or to what RESET gives (the server's,
        the role's, the connection's startup options). Literals are E'' strings, read the same
        whatever ``standard_conforming_strings`` a migration left behind. ``pg_settings`` costs
        about 0.7 ms, so this runs only after a migration that may have changed something."""
        started = ", ".join(f"({_literal(name)}, {_literal(value)})" for name, value in state.settings)
        started = started or "(NULL, NULL)"
        user, role = _literal(state.user), _literal(state.role)
        self._send(
            f"SELECT pg_catalog.set_config('session_authorization', {user}, false)"
            f" WHERE pg_catalog.current_setting('session_authorization') <> {user};\n"
            f"SELECT pg_catalog.set_config('role', {role}, false) WHERE pg_catalog.current_setting('role') <> {role};\n"
            "SELECT pg_catalog.set_config(s.name, COALESCE(start.setting, s.reset_val), false)"
            " FROM pg_catalog.pg_settings s"
            f" LEFT JOIN (VALUES {started}) AS start (name, setting) ON start.name = s.name"
            " WHERE (s.source = 'session' OR start.name IS NOT NULL) AND s.name NOT LIKE 'transaction%'"
            " AND s.setting IS DISTINCT FROM COALESCE(start.setting, s.reset_val)"
        )

    def _send(self, sql: str) -> None:
        """Run ``sql`` (one or more statements) in one round trip; raise its first error."""
        conn = self._psycopg_connection()
        if conn is None:
            self.raw_cursor().execute(sql)
            return
        with conn.lock:
            begin = "".join(f"{statement};\n" for statement in self._begin(conn))
            error, _, _ = self._simple_query(conn, begin + sql)
        if error is not None:
            raise error


# The per-connection SQLite settings a migration may change and the next one must not inherit.
SESSION_PRAGMAS = (
    "foreign_keys",
    "legacy_alter_table",
    "recursive_triggers",
    "ignore_check_constraints",
    "defer_foreign_keys",
    "reverse_unordered_selects",
    "query_only",
    "automatic_index",
)


class SQLiteBackend(Backend):
    @contextmanager
    def lock(
        self, schema: str | None, table: str, timeout: float | None, on_wait: Callable[[], None]
    ) -> Iterator[None]:
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

    def session_state(self) -> dict[str, Any]:
        """The connection's own PRAGMAs, which a ``no-transaction`` migration may change for
        good (``PRAGMA foreign_keys = OFF`` before rebuilding a table)."""
        cursor = self.raw_cursor()
        state = {}
        for pragma in SESSION_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
            state[pragma] = cursor.fetchone()[0]
        return state

    def restore_session(self, state: dict[str, Any]) -> None:
        cursor = self.raw_cursor()
        for pragma, value in state.items():
            cursor.execute(f"PRAGMA {pragma} = {int(value)}")


# Sections longer than this (characters) travel in a round trip of their own.
ALONE_ABOVE = 1 << 20


def _simple_query_gen(pgconn: Any, query: bytes, encoding: str, counted: int) -> Any:
    """psycopg's ``execute`` generator, reading results one by one instead of into a list.

    Returns the first error (the server skips the rest of the query after it), the number of
    results before it, and the row counts of the first ``counted`` results. It reads on to the
    end either way, so the connection is ready for the ROLLBACK. COPY to or from the client is
    refused: sqlmigrate has no data to send nor anywhere to put what comes back.
    """
    from psycopg import ProgrammingError, errors, generators, pq

    copy_states = (pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_BOTH)
    pgconn.send_query(query)
    yield from generators.send(pgconn)
    first_error, failed_at, count = None, 0, 0
    rows: list[int] = []
    while True:
        try:
            result = yield from generators.fetch(pgconn)
        except errors.DatabaseError:
            if first_error is None:
                raise
            return first_error, failed_at, rows  # the server closed the connection after saying why
        if result is None:
            return first_error, failed_at, rows
        if count < counted:
            rows.append(result.command_tuples or 0)
        status, error = result.status, None
        if status == pq.ExecStatus.FATAL_ERROR:
            error = errors.error_from_result(result, encoding=encoding)
        elif status in copy_states:
            yield from _leave_copy(pgconn, pq.ExecStatus(status))
            error = ProgrammingError(COPY_REFUSED[pq.ExecStatus(status).name])
        if error is not None and first_error is None:
            first_error, failed_at = error, count
        count += 1


COPY_REFUSED = {
    "COPY_IN": "COPY ... FROM STDIN cannot run in a migration: there is no input to read; "
    "use INSERT, or COPY from a file on the server",
    "COPY_OUT": "COPY ... TO STDOUT cannot run in a migration: its output would be lost; "
    "COPY to a file on the server instead",
    "COPY_BOTH": "COPY in both directions (replication) cannot run in a migration",
}


def _leave_copy(pgconn: Any, status: Any) -> Any:
    """End COPY mode: a COPY FROM STDIN fails (CopyFail), a COPY TO STDOUT's rows are read and
    dropped; either way the server then goes on to its next result."""
    from psycopg import generators, pq
    from psycopg.waiting import Wait

    if status != pq.ExecStatus.COPY_OUT:
        # COPY_IN: CopyFail aborts the statement. COPY_BOTH: CopyDone, then read what is left.
        message = b"COPY FROM STDIN cannot run in a migration" if status == pq.ExecStatus.COPY_IN else None
        while pgconn.put_copy_end(message) == 0:
            while not (yield Wait.W):
                continue
        yield from generators.send(pgconn)
        if status == pq.ExecStatus.COPY_IN:
            return
    while (size := pgconn.get_copy_data(1)[0]) != -1:
        if size == 0:
            while not (yield Wait.R):
                continue
            pgconn.consume_input()


def backend_for(connection: BaseDatabaseWrapper) -> Backend:
    return {"postgresql": PostgresBackend, "sqlite": SQLiteBackend}.get(connection.vendor, Backend)(connection)

"""PostgreSQL: a session advisory lock, one round trip per migration, error lines from the
server's position or from counting its results, session settings put back from ``pg_settings``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from django.db import Error as DjangoDatabaseError

from ..errors import ConfigurationError, LockTimeout
from ..files import Migration, Section
from ..statements import Statement, mentions, split
from . import _psycopg
from .base import Backend, StatementError, driver_error

# Sections longer than this (characters) travel in a round trip of their own.
ALONE_ABOVE = 1 << 20


class SessionState(NamedTuple):
    """A PostgreSQL session's user, role and own settings (``(name, value)`` pairs)."""

    user: str
    role: str
    settings: tuple[tuple[str, str], ...]


def advisory_lock_key(schema: str, table: str) -> int:
    """The ``pg_advisory_lock`` key of the runners of one history table: a signed 64-bit hash."""
    digest = hashlib.blake2b(f"sqlmigrate:{schema}.{table}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


class PostgresBackend(Backend):
    """PostgreSQL through psycopg 3 (psycopg2 works, with fewer round trips saved)."""

    def history_schema(self) -> str:
        """The connection's current schema when the run starts: the history table is named with
        it, so a migration that changes ``search_path`` cannot lose it."""
        cursor = self.raw_cursor()
        cursor.execute("SELECT pg_catalog.current_schema()")
        schema = cursor.fetchone()[0]
        if schema is None:
            raise ConfigurationError(
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

    def split(self, section: Section) -> list[Statement]:
        """Statements as PostgreSQL reads them (see :mod:`sqlmigrate_app.statements`)."""
        return split(section.sql, section.line)

    def run_section(
        self, cursor: Any, section: Section, prelude: Sequence[str] = (), may_commit: bool = False
    ) -> list[int]:
        """The prelude and the whole section in one round trip: the server parses it, as psql
        would. When the transaction has not begun yet, its BEGIN travels with them too, and
        if it ``may_commit``, so does its COMMIT: one round trip for the whole migration."""
        conn = self._psycopg_connection()
        if conn is None:  # psycopg2: no libpq access; its execute() keeps only the last result
            rows = self.run_prelude(cursor, prelude)
            try:
                cursor.execute(section.sql)
            except driver_error(self.connection) as exc:
                raise StatementError(exc, self._error_line(exc, section)) from exc
            return rows
        with conn.lock:
            begin = _psycopg.begin_statements(conn)
            head = [*begin, *prelude]
            text = "".join(f"{sql};\n" for sql in head)
            rows = []
            commit = ""
            if len(section.sql) > ALONE_ABOVE:
                # Gluing BEGIN and the rest to a big section would copy it once more; one round
                # trip saved is nothing next to its run time. The section goes alone.
                if text:
                    error, _, rows = _psycopg.simple_query(conn, text, counted=len(head))
                    if error is not None:
                        raise StatementError(error, None, in_prelude=True) from error
                head, text = [], ""
            elif begin and may_commit and not mentions(section.sql, ("copy",)):
                # COPY is the one statement the server completes that we then fail (see
                # COPY_REFUSED): its transaction must not be committed in the same round trip.
                commit = "\n;\nCOMMIT"
            error, failed_at, head_rows = _psycopg.simple_query(conn, text + section.sql + commit, counted=len(head))
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

    def in_transaction(self) -> bool:
        """Whether the server session is inside a transaction block."""
        conn = self._psycopg_connection()
        if conn is None:  # psycopg2: libpq's PQTRANS_IDLE is 0
            return bool(self.connection.connection.get_transaction_status() != 0)
        return bool(conn.info.transaction_status.name != "IDLE")

    def _psycopg_connection(self) -> Any:
        """The psycopg 3 connection under Django's, or None for psycopg2."""
        self.connection.ensure_connection()
        conn = self.connection.connection
        return conn if hasattr(conn, "pgconn") else None

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
        """``SET [LOCAL] lock_timeout / statement_timeout`` for the migration's durations."""
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
        whatever ``standard_conforming_strings`` a migration left behind. Reading ``pg_settings``
        costs more than a small migration, so this runs only after one that may have changed
        something (benchmarks/README.md has the figures)."""
        started = ", ".join(f"({_psycopg.literal(name)}, {_psycopg.literal(value)})" for name, value in state.settings)
        started = started or "(NULL, NULL)"
        user, role = _psycopg.literal(state.user), _psycopg.literal(state.role)
        self.execute(
            self.raw_cursor(),
            f"SELECT pg_catalog.set_config('session_authorization', {user}, false)"
            f" WHERE pg_catalog.current_setting('session_authorization') <> {user};\n"
            f"SELECT pg_catalog.set_config('role', {role}, false) WHERE pg_catalog.current_setting('role') <> {role};\n"
            "SELECT pg_catalog.set_config(s.name, COALESCE(start.setting, s.reset_val), false)"
            " FROM pg_catalog.pg_settings s"
            f" LEFT JOIN (VALUES {started}) AS start (name, setting) ON start.name = s.name"
            " WHERE (s.source = 'session' OR start.name IS NOT NULL) AND s.name NOT LIKE 'transaction%'"
            " AND s.setting IS DISTINCT FROM COALESCE(start.setting, s.reset_val)",
        )

    def reset_session(self) -> None:
        """``DISCARD ALL`` (temporary tables, prepared statements, settings, advisory locks,
        ``LISTEN``, cursors), then Django's own set-up of a new connection (time zone, role). A
        new connection instead costs a verified migration 60 % more: a new backend starts with
        cold catalog caches (benchmarks/README.md). What only a new connection would drop: a
        database or role setting a step changed (``ALTER DATABASE ... SET``), connections a step
        opened to other servers (``dblink``, ``postgres_fdw``). A lost connection is closed."""
        try:
            self.raw_cursor().execute("DISCARD ALL")
            self.connection.init_connection_state()
        except (DjangoDatabaseError, driver_error(self.connection)):
            self.connection.close()

    def execute(self, cursor: Any, sql: str) -> None:
        """Run ``sql`` (one or more statements) in one round trip, with the BEGIN psycopg would
        send first if a transaction is due; raise its first error."""
        conn = self._psycopg_connection()
        if conn is None:
            cursor.execute(sql)
            return
        with conn.lock:
            begin = "".join(f"{statement};\n" for statement in _psycopg.begin_statements(conn))
            error, _, _ = _psycopg.simple_query(conn, begin + sql)
        if error is not None:
            raise error

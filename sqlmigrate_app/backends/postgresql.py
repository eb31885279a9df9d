"""PostgreSQL: a session advisory lock, one round trip per migration, error lines from the
server's position or from counting its results, session settings put back from ``pg_settings``."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from django.db import Error as DjangoDatabaseError

from ..errors import ConfigurationError, LockTimeout, MigrationFileError
from ..files import Migration, Section
from ..statements import Statement, mentions, psql_open_body, psql_variable_colons, split, transaction_control
from . import _psycopg
from .base import Backend, Ending, StatementError, TransactionEnded, driver_error

# The guard after a section: it fails, with GUARD_MARK in its message, unless the transaction is
# still the one whose transaction-local setting holds this run's token (after a COMMIT or ROLLBACK
# in the section the setting is gone). A CASE whose ELSE is a text: no constant folding raises
# the error before the condition is evaluated.
GUARD_SETTING = "sqlmigrate.migration"
GUARD_MARK = "sqlmigrate: the migration ended its own transaction"
GUARD_SQL = (
    "SELECT CAST(CASE WHEN pg_catalog.current_setting('{setting}', true) = '{token}' THEN '0' "
    f"ELSE '{GUARD_MARK}' END AS integer)"
)


class SessionState(NamedTuple):
    """A PostgreSQL session's user, role and own settings (``(name, value)`` pairs)."""

    user: str
    role: str
    settings: tuple[tuple[str, str], ...]


def advisory_lock_key(schema: str, table: str) -> int:
    """The ``pg_advisory_lock`` key of the runners of one history table: a signed 64-bit hash."""
    digest = hashlib.blake2b(f"sqlmigrate:{schema}.{table}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def inert_psql_variables(sql: str) -> str:
    """``sql`` with a space after each colon psql would read as a variable reference (``:name``,
    ``:'name'``): psql sends it as written whatever variables are set, and the server reads the
    same tokens (a ``:`` is one of its own, so ``a[1:n]`` and ``a[1: n]`` are one thing)."""
    pieces, start = [], 0
    for colon in psql_variable_colons(sql):
        pieces.append(sql[start : colon + 1])
        start = colon + 1
    return " ".join([*pieces, sql[start:]])


class PostgresBackend(Backend):
    """PostgreSQL through psycopg 3 (psycopg2 works, with fewer round trips saved)."""

    utc_now_sql = "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')"

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
        self,
        cursor: Any,
        section: Section,
        prelude: Sequence[str] = (),
        record: Sequence[str] = (),
        may_commit: bool = False,
    ) -> int:
        """The prelude, the whole section and the record in one round trip: the server parses
        the section, as psql would. When the transaction has not begun yet, its BEGIN travels
        with them too, and if it ``may_commit``, so does its COMMIT: one round trip for the
        whole migration.

        Between the section and the record stands a guard: a statement that fails unless the
        transaction is still the one the prelude marked (a transaction-local setting holding a
        token of this run). Should the section end its own transaction anyway, the guard fails,
        what ran after the end is rolled back with it, and the record never commits."""
        conn = self._psycopg_connection()
        mark, guard = self.guard(secrets.token_hex(8))
        marked = [*prelude, mark]
        if conn is None:  # psycopg2: no libpq access; its execute() keeps only the last result
            self.run_prelude(cursor, marked)
            try:
                cursor.execute(";\n".join([f"{section.sql}\n", guard, *record]))
            except driver_error(self.connection) as exc:
                raise self._psycopg2_error(exc, section) from exc
            return int(cursor.rowcount)
        with conn.lock:
            begin = _psycopg.begin_statements(conn)
            head = [*begin, *marked]
            tail = [guard, *record]
            if begin and may_commit and not mentions(section.sql, ("copy",)):
                # COPY is the one statement the server completes that we then fail (see
                # COPY_REFUSED): its transaction must not be committed in the same round trip.
                tail.append("COMMIT")
            text = "".join(f"{sql};\n" for sql in head)
            kept = 2 if tail[-1] == "COMMIT" else 1  # the history change's rows, and COMMIT's
            outcome = _psycopg.simple_query(conn, [text, section.sql, f"\n;\n{';'.join(tail)}"], kept=kept)
        if outcome.error is None:
            return outcome.rows[0]
        raise self._located(outcome, section, text, len(head), len(record)) from outcome.error

    def guard(self, token: str) -> tuple[str, str]:
        """The statement that marks the migration's transaction with ``token`` (sent ahead of
        the section) and the guard that fails unless the transaction is still that one (sent
        after it, ahead of the history change)."""
        mark = f"SELECT pg_catalog.set_config('{GUARD_SETTING}', '{token}', true)"
        return mark, GUARD_SQL.format(setting=GUARD_SETTING, token=token)

    def _located(
        self, outcome: _psycopg.Outcome, section: Section, head_text: str, head: int, record: int
    ) -> Exception:
        """The error of a failed round trip, placed in the prelude, the section (at its file
        line) or the record, with what the section committed if it had ended its transaction
        before. Where the server gives a position (a syntax error, which stops it before it runs
        anything, or a name it cannot resolve), the line comes from it; any other error is
        placed by counting the results before it, one per statement: the section is never run
        a second time to find the line."""
        error = outcome.error
        assert error is not None
        position = int(getattr(getattr(error, "diag", None), "statement_position", None) or 0)
        if position and position <= len(head_text):
            return StatementError(error, None, part="prelude")
        index = outcome.failed_at - head
        if index < 0 and position:  # a syntax error: the server ran nothing
            return StatementError(error, self._error_line(error, section, len(head_text)))
        if index < 0:
            return StatementError(error, None, part="prelude")
        statements = self.split(section)
        ended = self._ending(outcome, statements, head, min(index, len(statements)))
        if index == len(statements) and GUARD_MARK in str(error):
            return TransactionEnded(ended or Ending(None, "COMMIT or ROLLBACK", ()))
        if len(statements) < index <= len(statements) + record:
            return StatementError(error, None, part="record", ended=ended)
        if position:
            return StatementError(error, self._error_line(error, section, len(head_text)), ended=ended)
        line = statements[index].line if index < len(statements) else None  # past them: an error at COMMIT
        return StatementError(error, line, ended=ended)

    @staticmethod
    def _ending(outcome: _psycopg.Outcome, statements: list[Statement], head: int, stop: int) -> Ending | None:
        """Whether the section's first ``stop`` statements ended the migration's transaction (by
        the results' tags), and which of them were committed: those before each COMMIT, back to
        the previous end; the ones after the last end were rolled back by the failure."""
        ends = {index - head: tag for index, tag in outcome.ends if 0 <= index - head < stop}
        first: Ending | None = None
        committed: list[int] = []
        pending: list[int] = []
        for index, statement in enumerate(statements[:stop]):
            pending.append(statement.line)
            tag = ends.get(index)
            if tag is None or (tag == "ROLLBACK" and transaction_control(statement.sql) != "rollback"):
                continue  # not an end (ROLLBACK TO a savepoint is tagged ROLLBACK too)
            if tag != "ROLLBACK":
                committed += pending
            pending = []
            first = first or Ending(statement.line, " ".join(statement.sql.split()[:2]).rstrip(";"), ())
        return Ending(first.line, first.statement, tuple(committed)) if first else None

    def _psycopg2_error(self, exc: Exception, section: Section) -> Exception:
        """psycopg2 keeps no results but the last: a failed guard says the section ended its
        transaction, without telling what was committed."""
        if GUARD_MARK in str(exc):
            return TransactionEnded(Ending(None, "COMMIT or ROLLBACK", ()))
        return StatementError(exc, self._error_line(exc, section))

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

    def identity_statements(self, state: SessionState | None) -> list[str]:
        """The run's user, then its role (setting the user resets the role), for the rest of the
        transaction only: :meth:`restore_session` puts the session's own back after it. Without
        a ``state`` (a script run by hand), the ones the session started with."""
        if state is None:
            return ["SET LOCAL SESSION AUTHORIZATION DEFAULT", "SET LOCAL role TO DEFAULT"]
        user, role = _psycopg.literal(state.user), _psycopg.literal(state.role)
        return [
            f"SELECT pg_catalog.set_config('session_authorization', {user}, true)",
            f"SELECT pg_catalog.set_config('role', {role}, true)",
        ]

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

    def script_session_reset(self) -> list[str]:
        """The session as psql started it: its user first (which also puts back the role it
        started with), then its role, then every setting, to what the connection's start-up
        options, the role's and the database's defaults and the server's made it. Each works
        for any user, with no transaction open."""
        return ["RESET SESSION AUTHORIZATION", "RESET ROLE", "RESET ALL"]

    def script_sql(self, sql: str, path: Path, first_line: int) -> str:
        """``sql`` with psql's variable references made inert (:func:`inert_psql_variables`).
        Refused when psql would take a word in it for the start of a function body still open
        at its end: psql would send the script's next lines (the COMMIT, the next migrations)
        with its last statement."""
        opened = psql_open_body(sql)
        if opened is not None:
            word = sql[opened : opened + len("begin")]  # the outermost word open is a begin
            raise MigrationFileError(
                path,
                f"psql takes '{word}' for the start of a function body, so a script run by psql would send "
                "everything after this section (its COMMIT, the next migrations) with this statement; quote the "
                f'name ("{word.lower()}") or rename it, or apply this migration with sqlmigrate_up',
                first_line + sql.count("\n", 0, opened),
            )
        return inert_psql_variables(sql)

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
            error = _psycopg.simple_query(conn, begin + sql).error
        if error is not None:
            raise error

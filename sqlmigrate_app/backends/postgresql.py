"""PostgreSQL through psycopg 3: a session advisory lock, one round trip per migration, error
lines from the server's position or from counting its results, session settings put back from
``pg_settings``; the history table looked up by ``to_regclass``, the catalog reader, throwaway
databases made on the server as Django makes test databases; tenant schemas: a tenant's
migrations placed in its schema by transaction-local settings, the histories of many tenants
read in a few queries, the connections the server has to spare."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from django.db import Error as DjangoDatabaseError
from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from ..errors import (
    ConfigurationError,
    LockTimeout,
    MigrationFileError,
    MissingSchema,
    ThrowawayDatabaseError,
    UnsupportedPooler,
    database_error_types,
    database_message,
    sqlstate,
)
from ..files import Section, Timeouts
from ..snapshot.postgresql import PostgresReader
from ..statements import Statement, mentions, psql_open_body, psql_variable_colons, split, transaction_control
from . import _psycopg
from .base import (
    Backend,
    BatchEnd,
    Block,
    Ending,
    HistoryName,
    HistoryRows,
    StatementError,
    TenantRows,
    ThrowawayPlace,
    TransactionEnded,
    driver_error,
)

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
# What separates two migrations' transactions in a batch's message.
BETWEEN_BLOCKS = ";\n"
# Sent after a batched migration's mark: the server holds a message's results until its end
# unless it sends a notice, which it sends at once with whatever is waiting, so each migration's
# progress line shows as it starts (about 10 us a migration).
PROGRESS = ("DO $$BEGIN RAISE NOTICE 'sqlmigrate: a migration started'; END$$",)
# SQLSTATEs: a statement that gave up waiting for a lock (lock_timeout); the server ending the
# session (pg_terminate_backend, a shutdown, a crash of another backend); no privilege.
LOCK_NOT_AVAILABLE = "55P03"
SESSION_ENDED = ("57P01", "57P02", "57P03")
INSUFFICIENT_PRIVILEGE = "42501"
# PgBouncer's SQLSTATE for what its pooling mode cannot do (statement mode: a transaction).
PROTOCOL_VIOLATION = "08P01"
# The statement of a migration's transaction that fails, with CLAIM_MARK in its message, unless
# the history is as the run's plan expects (see MigrationRunner: it reads the history again).
CLAIM_MARK = "sqlmigrate: the history changed since the plan was made"
# The same for a transaction that runs on another server session than the one holding the run's
# session lock: the connection is transaction-pooled, which the alias does not say.
MOVED_MARK = "sqlmigrate: this transaction runs on another server session than the run lock"
# Who holds the advisory lock of a key (a bigint: its high and low halves in classid and objid),
# as far as this role may see: process, application, client, state and since when, query.
LOCK_HOLDERS = (
    "SELECT l.pid, a.application_name, host(a.client_addr), a.state,"
    " to_char(a.state_change AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), a.query"
    " FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.pid <> pg_catalog.pg_backend_pid()"
    " AND l.classid::bigint = (%s::bigint >> 32) & 4294967295 AND l.objid::bigint = %s::bigint & 4294967295"
    " ORDER BY l.pid"
)
# How much of a holder's last query the message shows.
QUERY_SHOWN = 120
# PostgreSQL's limit on identifiers, in bytes: a throwaway database's name fits it.
MAX_NAME = 63
# The throwaway databases that may be leftovers: named and marked as verify's, this role's, nobody connected.
LEFTOVERS = (
    "SELECT d.datname, pg_catalog.shobj_description(d.oid, 'pg_database') FROM pg_catalog.pg_database d"
    " WHERE d.datname LIKE %s AND NOT d.datistemplate AND pg_catalog.pg_has_role(d.datdba, 'MEMBER')"
    " AND pg_catalog.shobj_description(d.oid, 'pg_database') LIKE %s"
    " AND NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a WHERE a.datid = d.oid) ORDER BY d.datname"
)
# How long an interrupted CREATE DATABASE, terminated, may take to end (seconds).
CREATE_END_WAIT = 30.0
# The kinds of relation Django's introspection calls tables: table, partitioned table, view,
# materialized view, foreign table.
HISTORY_EXISTS = (
    "SELECT 1 FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass(%s) AND relkind IN ('r', 'p', 'v', 'm', 'f')"
)
# The same in a tenant's schema, and whether that schema exists.
TENANT_HISTORY_EXISTS = (
    f"SELECT EXISTS ({HISTORY_EXISTS}), EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = %s)"
)
# A tenant's migration runs with its schema first on the search path, then the session's own
# (extensions and shared tables resolve), and its name in a setting its SQL may read.
SCHEMA_SETTING = "sqlmigrate.schema"
TENANT_SETTINGS = (
    "SELECT pg_catalog.set_config('search_path', pg_catalog.concat_ws(', ', pg_catalog.quote_ident({schema}),"
    " NULLIF(pg_catalog.current_setting('search_path'), '')), {local}),"
    f" pg_catalog.set_config('{SCHEMA_SETTING}', {{schema}}, {{local}})"
)
# Of each tenant schema, in the order given: whether it exists, whether its history table does,
# and that table's columns.
TENANT_CATALOG = (
    "SELECT n.oid IS NOT NULL, c.oid IS NOT NULL, ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a"
    " WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)"
    " FROM unnest(%s::text[]) WITH ORDINALITY AS s (name, i)"
    " LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = s.name"
    " LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = %s"
    " AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY s.i"
)
# The rows of the history tables (``{tables}``: one SELECT per table, numbered) that are not
# exactly the expected (id, checksum) pairs; one row saying so for each table that is. Each
# SELECT ends in OFFSET 0, which keeps the planner from pulling 500 subqueries up into one
# append relation: at 1,000 tables of 50 rows that took a new session 0.32 s, against 0.17 s.
TENANT_ROWS = (
    "WITH expected (id, checksum) AS (SELECT * FROM unnest(%s::text[], %s::text[])),"
    " history (t, id, name, checksum) AS MATERIALIZED ({tables}),"
    " summary AS (SELECT h.t, count(*) = %s AND count(DISTINCT h.id) = %s"
    " AND bool_and(e.checksum IS NOT DISTINCT FROM h.checksum) AS matches"
    " FROM history h LEFT JOIN expected e ON e.id = h.id GROUP BY h.t)"
    " SELECT s.t, s.matches, h.id, h.name, h.checksum FROM summary s LEFT JOIN history h ON h.t = s.t AND NOT s.matches"
)
# How many history tables one query reads: each table (and its index) is locked until the
# query ends, in a lock table of max_locks_per_transaction (64) per connection the server allows.
TENANTS_PER_QUERY = 500
# How many more connections this user may open: the server's, the role's and the database's
# limits (a superuser has none but max_connections), less the client connections there are.
SPARE_CONNECTIONS = (
    "SELECT pg_catalog.current_setting('max_connections')::int - count(*) - CASE WHEN r.rolsuper THEN 0 ELSE"
    " pg_catalog.current_setting('superuser_reserved_connections')::int"
    " + COALESCE(NULLIF(pg_catalog.current_setting('reserved_connections', true), '')::int, 0) END,"
    " CASE WHEN NOT r.rolsuper AND r.rolconnlimit >= 0"
    " THEN r.rolconnlimit - count(*) FILTER (WHERE a.usename = r.rolname) END,"
    " CASE WHEN NOT r.rolsuper AND d.datconnlimit >= 0"
    " THEN d.datconnlimit - count(*) FILTER (WHERE a.datname = d.datname) END"
    " FROM pg_catalog.pg_stat_activity a, pg_catalog.pg_roles r, pg_catalog.pg_database d"
    " WHERE a.backend_type = 'client backend' AND r.rolname = session_user"
    " AND d.datname = pg_catalog.current_database()"
    " GROUP BY r.rolsuper, r.rolconnlimit, r.rolname, d.datconnlimit, d.datname"
)


# Which views (by their rewrite rule) use which relations and functions, among the named ones.
CATALOG_USES_SQL = (
    "SELECT DISTINCT lower(vn.nspname || '.' || v.relname), lower(coalesce(un.nspname || '.' || u.relname,"
    " pn.nspname || '.' || p.proname))"
    " FROM pg_catalog.pg_depend d"
    " JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid"
    " JOIN pg_catalog.pg_class v ON v.oid = r.ev_class"
    " JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace"
    " LEFT JOIN pg_catalog.pg_class u ON d.refclassid = 'pg_catalog.pg_class'::regclass AND u.oid = d.refobjid"
    " LEFT JOIN pg_catalog.pg_namespace un ON un.oid = u.relnamespace"
    " LEFT JOIN pg_catalog.pg_proc p ON d.refclassid = 'pg_catalog.pg_proc'::regclass AND p.oid = d.refobjid"
    " LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace"
    " WHERE lower(v.relname) = ANY(%s) AND coalesce(u.oid, p.oid) IS NOT NULL AND coalesce(u.oid, 0) <> v.oid"
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


def _failing_unless(condition: str, mark: str) -> str:
    """A statement that fails with ``mark`` in its message unless ``condition`` holds (a CASE
    whose ELSE is a text: no constant folding raises the error before the condition is read)."""
    return f"SELECT CAST(CASE WHEN {condition} THEN '0' ELSE '{mark}' END AS integer)"


def _holder(
    pid: int, application: str | None, client: str | None, state: str | None, since: str | None, query: str | None
) -> str:
    """One holder of the lock, for :class:`LockTimeout`'s message."""
    if state is None:  # another role's session, hidden from this one
        return f"; held by server process {pid} (ask a superuser what it runs)"
    text = " ".join((query or "").split())
    text = text if len(text) <= QUERY_SHOWN else text[: QUERY_SHOWN - 3] + "..."
    where = f", from {client}" if client else ""
    return (
        f"; held by server process {pid} (application {application!r}{where}), {state} since {since} UTC, "
        f"last query: {text!r}; if its runner is gone (a pooled server connection keeps a session lock), "
        f"end it: SELECT pg_terminate_backend({pid})"
    )


def inert_psql_variables(sql: str) -> str:
    """``sql`` with a space after each colon psql would read as a variable reference (``:name``,
    ``:'name'``): psql sends it as written whatever variables are set, and the server reads the
    same tokens (a ``:`` is one of its own, so ``a[1:n]`` and ``a[1: n]`` are one thing)."""
    pieces, start = [], 0
    for colon in psql_variable_colons(sql):
        pieces.append(sql[start : colon + 1])
        start = colon + 1
    return " ".join([*pieces, sql[start:]])


class _Progress:
    """What a batch's results have said so far: the index of each block's mark (its token, the
    result of the statement that marks its transaction: the block has started) and of the first
    error; ``started`` and ``committed`` told of each block as its results arrive."""

    def __init__(self, tokens: list[str], started: Callable[[int], None], committed: Callable[[int], None]) -> None:
        self.tokens = [token.encode() for token in tokens]
        self.started, self.committed = started, committed
        self.marks: list[int] = []
        self.failed_at: int | None = None
        self.done = 0  # how many blocks were reported committed

    def see(self, index: int, result: Any) -> None:
        """One result: an error, a block's mark (the one before it committed), or neither."""
        if result.error_message and self.failed_at is None:
            self.failed_at = index
        if len(self.marks) < len(self.tokens) and _psycopg.single_value(result) == self.tokens[len(self.marks)]:
            self.commit_last()
            self.marks.append(index)
            self.started(len(self.marks) - 1)

    def commit_last(self) -> None:
        """Report the last block that started as committed (once)."""
        if self.done < len(self.marks):
            self.committed(self.done)
            self.done += 1


class PostgresBackend(Backend):
    """PostgreSQL through psycopg 3, whose access to libpq sends a migration in one round trip
    and reads its results one at a time (psycopg2 cannot: it is refused)."""

    utc_now_sql = "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')"
    run_by_hand = "psql -v ON_ERROR_STOP=1 -f FILE"
    lintable = True
    has_schemas = True
    sends_batches = True

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        driver = connection.Database.__name__  # type: ignore[attr-defined]
        if driver != "psycopg":
            raise ConfigurationError(
                f"database {connection.alias!r} is PostgreSQL through {driver}: sqlmigrate needs psycopg 3; "
                "pip install 'psycopg[binary]' (Django uses it when it is installed)"
            )
        super().__init__(connection)
        # Django's own setting for an alias behind a transaction pooler (PgBouncer's transaction
        # mode): the alias says each transaction may run on another server session.
        self.transaction_pooled = bool(connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"))
        self._lock_key: int | None = None  # the run lock's key while it is held
        self._lock_wait: float | None = None  # and how long a migration waits for it (pooled)
        self._lock_pid: int | None = None  # the server process that holds it (not pooled)
        # The lock's first message went with history_schema's question: whether its check is on.
        self._opened: bool | None = None

    def read_history(self, history: HistoryName) -> HistoryRows | None:
        """The lookup and ``SELECT *`` in one round trip when nothing but the run is open (else
        one each): the ``SELECT`` fails when there is no table, which ends the message there."""
        if not self._autocommit():
            return super().read_history(history)
        results: list[Any] = []
        conn = self._psycopg_connection()
        with conn.lock:
            statements = self._history_statements(history)
            outcome = self._logged(conn, statements, lambda _, result: results.append(result))
        return self._history_found(results, outcome, history)

    def _logged(self, conn: Any, statements: list[str], watch: _psycopg.Watch) -> _psycopg.Outcome:
        """``statements`` in one message (call with ``conn.lock`` held), each shown in Django's
        query log as its cursor would show it (what a test or the debug toolbar captures)."""
        started = time.perf_counter()
        outcome = _psycopg.simple_query(conn, "".join(f"{sql};\n" for sql in statements), watch=watch)
        if self.connection.queries_logged:
            took = f"{time.perf_counter() - started:.3f}"
            self.connection.queries_log.extend({"sql": sql, "time": took} for sql in statements)
        return outcome

    def _raised(self, error: Exception | None, what: str) -> Exception:
        """``error`` as Django's cursor raises it (its own error, the driver's under it)."""
        if error is None:
            return RuntimeError(f"no answer to {what}")
        try:
            with self.connection.wrap_database_errors:
                raise error
        except Exception as wrapped:
            return wrapped
        return error  # pragma: no cover - wrap_database_errors always raises

    def _autocommit(self) -> bool:
        """Whether the session is outside any transaction, in autocommit (the run's own)."""
        conn = self._psycopg_connection()
        return bool(conn.autocommit) and _psycopg.idle(conn)

    def _history_statements(self, history: HistoryName) -> list[str]:
        """Whether the history table (and its tenant's schema) exists, then ``SELECT *`` of it."""
        exists = HISTORY_EXISTS.replace("%s", _psycopg.literal(history.qualified))
        schema = "true"
        if history.tenant is not None:
            schema = f"EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = {_psycopg.literal(history.tenant)})"
        return [f"SELECT EXISTS ({exists}), {schema}", f"SELECT * FROM {history.qualified}"]

    def _history_found(self, results: list[Any], outcome: _psycopg.Outcome, history: HistoryName) -> HistoryRows | None:
        """The history from the results of :meth:`_history_statements`, the first of ``results``."""
        exists, schema_exists = (_psycopg.single_row(results[0]) if results else None) or (None, None)
        if exists is None:
            raise self._raised(outcome.error, "the history lookup")
        if schema_exists != b"t" and history.tenant is not None:
            raise MissingSchema(self.connection.alias, history.tenant)
        if exists != b"t":
            return None
        if len(results) < 2 or results[1].error_message:
            raise self._raised(outcome.error, "the history read")
        rows = results[1]
        names = [rows.fname(i).decode() for i in range(rows.nfields)]
        return HistoryRows(names, _psycopg.loaded_rows(self._psycopg_connection(), rows))

    def history_table_exists(self, table: str, qualified: str, tenant: str | None = None) -> bool:
        """Looked up by its ``qualified`` name, which resolves as the queries' do: through
        ``search_path``, or in the schema the run pinned; in a ``tenant``'s schema, whether that
        exists is asked in the same query."""
        with self.connection.cursor() as cursor:
            if tenant is None:
                cursor.execute(HISTORY_EXISTS, [qualified])
                return cursor.fetchone() is not None
            cursor.execute(TENANT_HISTORY_EXISTS, [qualified, tenant])
            exists, schema_exists = cursor.fetchone()
        if not schema_exists:
            raise MissingSchema(self.connection.alias, tenant)
        return bool(exists)

    # Tenants ------------------------------------------------------------------------------------

    def schema_statements(self, tenant: str | None, local: bool) -> list[str]:
        """One statement: ``search_path`` and ``sqlmigrate.schema`` set with ``set_config``, the
        schema's name a literal and quoted as an identifier by the server (``quote_ident``)."""
        if tenant is None:
            return []
        return [TENANT_SETTINGS.format(schema=_psycopg.literal(tenant), local="true" if local else "false")]

    def create_schema(self, tenant: str) -> None:
        """``CREATE SCHEMA IF NOT EXISTS``."""
        self.raw_cursor().execute(f"CREATE SCHEMA IF NOT EXISTS {_psycopg.identifier(tenant)}")

    def tenant_django_migrations(self, tenant: str) -> set[tuple[str, str]] | None:
        """``to_regclass``, then the rows: two queries, only for a plan with ``requires=``."""
        qualified = f"{_psycopg.identifier(tenant)}.django_migrations"
        cursor = self.raw_cursor()
        cursor.execute(HISTORY_EXISTS, [qualified])
        if cursor.fetchone() is None:
            return None
        cursor.execute(f"SELECT app, name FROM {qualified}")
        return {(str(app), str(name)) for app, name in cursor.fetchall()}

    def tenant_tables(self, table: str, tenants: Sequence[str]) -> list[tuple[bool, tuple[str, ...] | None]]:
        """One query of ``pg_namespace``, ``pg_class`` and ``pg_attribute``."""
        cursor = self.raw_cursor()
        cursor.execute(TENANT_CATALOG, [list(tenants), table])
        return [
            (schema_exists, tuple(columns) if table_exists else None)
            for schema_exists, table_exists, columns in cursor.fetchall()
        ]

    def tenant_rows(self, table: str, tenants: Sequence[str], expected: dict[str, str]) -> dict[str, TenantRows]:
        """One query per :data:`TENANTS_PER_QUERY` tables (see :data:`TENANT_ROWS`)."""
        cursor = self.raw_cursor()
        found: dict[str, TenantRows] = {}
        for start in range(0, len(tenants), TENANTS_PER_QUERY):
            batch = list(tenants[start : start + TENANTS_PER_QUERY])
            selects = " UNION ALL ".join(
                f"(SELECT {index}, id::text, name::text, checksum::text"
                f" FROM {_psycopg.identifier(tenant)}.{_psycopg.identifier(table)} OFFSET 0)"
                for index, tenant in enumerate(batch)
            )
            ids = list(expected)
            cursor.execute(TENANT_ROWS.format(tables=selects), [ids, list(expected.values()), len(ids), len(ids)])
            found.update(_batch_rows(batch, cursor.fetchall(), bool(expected)))
        return found

    def spare_connections(self) -> int:
        """``max_connections`` less the reserved slots (none for a superuser) and the client
        connections there are, or less if the role's or the database's ``CONNECTION LIMIT`` is
        nearer; never below 0."""
        cursor = self.raw_cursor()
        cursor.execute(SPARE_CONNECTIONS)
        limits = [limit for limit in cursor.fetchone() if limit is not None]
        return max(0, int(min(limits)))

    def cancel(self) -> None:
        """psycopg's ``cancel_safe``: the server cancels the statement this connection runs."""
        raw = self.connection.connection
        if raw is not None and not raw.closed:
            with contextlib.suppress(Exception):  # nothing to cancel, or the connection went meanwhile
                raw.cancel_safe(timeout=5)

    def schema_reader(self, history_table: str) -> PostgresReader:
        """Set-based catalog queries; the reader re-reads only what changed since its last read."""
        return PostgresReader(self.connection, history_table)

    def throwaway_place(self) -> PostgresServer:
        """This database's server, reached through its ``postgres`` database."""
        return PostgresServer(self.connection)

    @contextmanager
    def read_only(self) -> Iterator[None]:
        """``REPEATABLE READ, READ ONLY``: the server refuses a write, and every query sees one
        snapshot. Reading takes ``ACCESS SHARE`` locks only, which block nothing but an
        ``ACCESS EXCLUSIVE`` one; works on a hot standby too."""
        outermost = not self.connection.in_atomic_block
        with transaction.atomic(using=self.connection.alias):
            if outermost:
                with self.connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    def history_schema(self, locking: bool = False) -> str:
        """The connection's current schema when the run starts: the history table is named with
        it, so a migration that changes ``search_path`` cannot lose it. Asked through Django's
        cursor: a connection wrapper that sets ``search_path`` as it opens one (django-tenants')
        has then set the schema it means, not left the last tenant's. With ``locking``, when the
        run will take a session lock on its own session, the lock's first message
        (:meth:`_lock_opening`) travels with the question: one round trip less."""
        opening = self._lock_opening() if locking and not self.transaction_pooled and self._autocommit() else []
        try:
            with self.connection.cursor() as cursor:
                cursor.execute("; ".join(["SELECT pg_catalog.current_schema()", *opening]))
                schema = cursor.fetchone()[0]
        except database_error_types(self.connection) as exc:
            if not opening:
                raise
            refusal = self.pooler_refusal(exc)
            if refusal is not None:
                raise refusal from None
            self._rollback_opening()
            return self.history_schema()  # the lock opens alone, and finds out what failed
        if opening:
            self._opened = len(opening) > 1  # whether the dead-client check is on
        if schema is None:
            self.lock_abandoned()
            raise ConfigurationError(
                f"database {self.connection.alias!r}: its search_path names no existing schema, so there is no "
                "schema for the history table; set search_path (e.g. OPTIONS 'options': '-c search_path=public')"
            )
        return str(schema)

    def _lock_opening(self) -> list[str]:
        """The session lock's first message (see :meth:`_try_lock`): ``BEGIN`` and the
        dead-client check, ending inside the transaction the lock's message commits."""
        checking = getattr(self.connection, "pg_version", 0) >= 140000
        return ["BEGIN", *["SET client_connection_check_interval = '1s'"] * checking]

    def lock_abandoned(self) -> None:
        """The transaction :meth:`history_schema` opened for the lock is rolled back."""
        if self._opened is not None:
            self._rollback_opening()

    def _rollback_opening(self) -> None:
        self._opened = None
        if not self.connection_lost() and not _psycopg.idle(self._psycopg_connection()):
            self.raw_cursor().execute("ROLLBACK")

    @contextmanager
    def lock(
        self,
        schema: str | None,
        table: str,
        timeout: float | None,
        on_wait: Callable[[], None],
        read: HistoryName | None = None,
    ) -> Iterator[HistoryRows | None]:
        """A session-level advisory lock, so it also covers ``no-transaction`` migrations; none
        on a transaction-pooled alias, where every migration's transaction takes its own
        (:meth:`claim_statements`) and nothing is left on a server session. With ``read``, the
        history read with the lock (:meth:`_try_lock`), or alone on a pooled alias."""
        key = advisory_lock_key(schema or "", table)
        self._lock_key = key
        self._lock_wait = timeout
        try:
            if self.transaction_pooled:
                yield None if read is None else self.read_history(read)
            else:
                with self._session_lock(key, timeout, on_wait, read) as found:
                    yield found
        finally:
            self._lock_key = None
            self._lock_pid = None

    @contextmanager
    def _session_lock(
        self, key: int, timeout: float | None, on_wait: Callable[[], None], read: HistoryName | None
    ) -> Iterator[HistoryRows | None]:
        """Taken with the dead-client check and the history read (:meth:`_try_lock`); let go in
        one round trip with the check's reset."""
        checking = getattr(self.connection, "pg_version", 0) >= 140000
        got, checking, answer = self._try_lock(key, checking, read)
        try:
            if not got:
                on_wait()
                self._wait_for_lock(self.raw_cursor(), key, timeout)
        except BaseException:
            if checking and not self.connection_lost():
                self.raw_cursor().execute("RESET client_connection_check_interval")
            raise
        try:
            if read is None:
                yield None
            else:
                yield self._history_found(*answer, read) if got and answer else self.read_history(read)
        finally:
            if not self.connection_lost():
                reset = ";\nRESET client_connection_check_interval" if checking else ""
                self.execute(self.raw_cursor(), f"SELECT pg_catalog.pg_advisory_unlock({key}){reset}")

    def _try_lock(
        self, key: int, checking: bool, read: HistoryName | None
    ) -> tuple[bool, bool, tuple[list[Any], _psycopg.Outcome] | None]:
        """``pg_try_advisory_lock`` with ``pg_backend_pid()`` (the server process each migration
        then checks it runs on: :meth:`claim_statements`), after it the history read (the
        statements of :meth:`read_history`) when nothing but the run is open.

        Then the run's first message is ``BEGIN`` and the dead-client check (sent with
        :meth:`history_schema`'s question where it was asked for the lock), ending inside the
        transaction the lock's message commits: PgBouncer in statement mode refuses that at
        once, before any lock is taken (:meth:`pooler_refusal`); the COMMIT comes before the
        history read, so that a missing history table (an error, the message's last statement)
        cannot undo the check. In the caller's transaction, which nothing may commit, the check
        and the lock travel in one message and the history is read afterwards.

        The check has the server end this session within a second of the client dying
        (PostgreSQL 14+ on Linux), so a runner killed during a long statement does not keep the
        lock until the statement ends; it is reset when the lock is let go: the session may be
        the app's own. Whether the lock was got, whether the check is on, and the results of the
        history read with the message's outcome (None: not read)."""
        began, self._opened = self._opened, None
        alone = began is not None or self._autocommit()
        check = ["SET client_connection_check_interval = '1s'"] if checking else []
        conn = self._psycopg_connection()
        if began is not None:
            checking = began  # the first message went with history_schema's question
        elif alone and not self._open_with_check(conn, check):
            return self._try_lock(key, False, read)  # no kernel support: the lock lasts as the statement
        reading = self._history_statements(read) if read is not None and alone else []
        results: list[Any] = []
        with conn.lock:
            ahead = [] if alone else [*_psycopg.begin_statements(conn), *check]
            commit = ["COMMIT"] if alone else []
            lock = f"SELECT pg_catalog.pg_try_advisory_lock({key}), pg_catalog.pg_backend_pid()"
            statements = [*ahead, lock, *commit, *reading]
            outcome = self._logged(conn, statements, lambda _, result: results.append(result))
            if outcome.error is not None and outcome.failed_at <= len(ahead) + len(commit):
                if alone and not _psycopg.idle(conn):
                    _psycopg.simple_query(conn, "ROLLBACK")
                raise outcome.error
        row = _psycopg.single_row(results[len(ahead)]) or (None, None)
        got = row[0] == b"t"
        self._lock_pid = int(row[1]) if row[1] is not None else None
        return got, checking, (results[len(ahead) + len(commit) + 1 :], outcome) if reading else None

    def _open_with_check(self, conn: Any, check: list[str]) -> bool:
        """The run's first message alone: ``BEGIN`` and the dead-client ``check``, left open for
        the lock's message to commit (PgBouncer in statement mode refuses it here:
        :meth:`pooler_refusal`). False when the server cannot set the check: rolled back, to be
        tried without it."""
        try:
            with conn.lock:
                opened = self._logged(conn, ["BEGIN", *check], lambda _, result: None)
        except driver_error(self.connection) as exc:
            raise (self.pooler_refusal(exc) or exc) from None
        if opened.error is None:
            return True
        refusal = self.pooler_refusal(opened.error)
        if refusal is not None:
            raise refusal from None
        with conn.lock:
            _psycopg.simple_query(conn, "ROLLBACK")
        if not check:
            raise opened.error
        return False

    def pooler_refusal(self, error: BaseException) -> UnsupportedPooler | None:
        """The one-line refusal of a pooler that cannot run migrations: PgBouncer in statement
        mode, which ends the connection (SQLSTATE 08P01) at the first transaction of more than
        one round trip. None for any other error."""
        if sqlstate(error) != PROTOCOL_VIOLATION or "statement pooling" not in str(error):
            return None
        return UnsupportedPooler(
            f"database {self.connection.alias!r} is behind a connection pooler in statement mode "
            f"({database_message(error)}): a migration needs a transaction of several statements; use session "
            "or transaction pooling, or a direct connection (a second alias without the pooler, --database)"
        )

    def transaction_lock(self) -> list[str]:
        """On a transaction-pooled alias, ``pg_advisory_xact_lock`` on the run lock's key,
        bounded by ``--wait`` (the timeout :meth:`claim_error` names the holder of), with the
        server told to notice a dead client (see :meth:`_try_lock`) for this transaction."""
        if self._lock_key is None or not self.transaction_pooled:
            return []
        return self._xact_lock(self._lock_key)

    def _xact_lock(self, key: int) -> list[str]:
        statements = []
        if self.transaction_pooled and getattr(self.connection, "pg_version", 0) >= 140000:
            statements.append("SET LOCAL client_connection_check_interval = '1s'")
        bounded = self.transaction_pooled and self._lock_wait is not None
        if bounded:
            statements.append(f"SET LOCAL lock_timeout = '{int((self._lock_wait or 0) * 1000)}ms'")
        statements.append(f"SELECT pg_catalog.pg_advisory_xact_lock({key})")
        if bounded:
            statements.append("SET LOCAL lock_timeout TO DEFAULT")
        return statements

    def claim_statements(self, condition: str) -> list[str]:
        """First, when the run holds a session lock, a check that this transaction runs on that
        lock's server session (else the alias is transaction-pooled without saying so, and
        waiting for the lock would wait for ourselves); then ``pg_advisory_xact_lock`` on the
        run lock's key (on the lock's own session it is granted at once; on a transaction-pooled
        alias as :meth:`transaction_lock` takes it); then the condition, checked in a statement
        of its own, so that under READ COMMITTED it reads what the runner before committed."""
        key = self._lock_key
        if key is None:
            return []
        moved = []
        if self._lock_pid is not None:
            moved.append(_failing_unless(f"pg_catalog.pg_backend_pid() = {self._lock_pid}", MOVED_MARK))
        return [*moved, *self._xact_lock(key), _failing_unless(condition, CLAIM_MARK)]

    def history_changed(self, error: BaseException) -> bool:
        """The claim's condition failed: its mark is in the message."""
        return CLAIM_MARK in str(error)

    def claim_error(self, error: BaseException) -> Exception | None:
        """A transaction that ran away from the session lock's server session; the wait for the
        lock on a transaction-pooled alias timed out (``--wait``), with who holds it. Statement
        pooling: :meth:`pooler_refusal`."""
        if MOVED_MARK in str(error):
            return UnsupportedPooler(
                f"database {self.connection.alias!r} ran a migration's transaction on another server session than "
                "the one holding the run lock: it is behind a transaction pooler (PgBouncer in transaction mode) "
                "the alias does not declare; set DISABLE_SERVER_SIDE_CURSORS = True on it, as Django asks for "
                "transaction pooling, or migrate through a direct alias (--database). The session lock may stay on "
                f"server process {self._lock_pid}: SELECT pg_terminate_backend({self._lock_pid})"
            )
        if self._lock_key is not None and self.transaction_pooled and self.is_lock_timeout(error):
            return self.lock_timeout(self._lock_key, self._lock_wait or 0)
        return None

    def _wait_for_lock(self, cursor: Any, key: int, timeout: float | None) -> None:
        if timeout is None:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
            return
        cursor.execute(f"SET lock_timeout = '{int(timeout * 1000)}ms'")
        try:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
        except driver_error(self.connection) as exc:
            if self.is_lock_timeout(exc):
                raise self.lock_timeout(key, timeout) from None
            raise
        finally:
            if not self.connection_lost():
                cursor.execute("RESET lock_timeout")

    def lock_timeout(self, key: int, timeout: float) -> LockTimeout:
        """``LockTimeout`` naming who holds the lock of ``key``, as far as the server tells
        (another role's sessions are hidden from a role without ``pg_read_all_stats``)."""
        message = f"another runner held the migration lock for more than {timeout:g} s"
        try:
            cursor = self.raw_cursor()
            cursor.execute(LOCK_HOLDERS, [key, key])
            holders = cursor.fetchall()
        except driver_error(self.connection):
            return LockTimeout(message)
        return LockTimeout(message + "".join(_holder(*row) for row in holders))

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
        with conn.lock:
            begin = _psycopg.begin_statements(conn)
            commit = bool(begin) and may_commit and self.batchable(section)
            parts, head = self._block(section, prelude, record, secrets.token_hex(8), begin, commit)
            kept = 2 if commit else 1  # the history change's rows, and COMMIT's
            outcome = _psycopg.simple_query(conn, parts, kept=kept)
        if outcome.error is None:
            return outcome.rows[0]
        raise self._located(outcome, section, parts[0], head, len(record)) from outcome.error

    def batchable(self, section: Section) -> bool:
        """Any section but one that may hold a COPY: the one statement the server completes that
        we then fail (see COPY_REFUSED), so its transaction must not be committed in the same
        message as it."""
        return not mentions(section.sql, ("copy",))

    def _block(
        self,
        section: Section,
        prelude: Sequence[str],
        record: Sequence[str],
        token: str,
        begin: Sequence[str],
        commit: bool,
        progress: Sequence[str] = (),
    ) -> tuple[list[str], int]:
        """One migration's transaction as the three parts of its text, and how many statements
        go ahead of its section: ``begin``, the ``prelude``, the mark of ``token`` and the
        ``progress`` statements; the section; the guard, the ``record`` and, with ``commit``,
        the COMMIT. The one place that composes a migration's transaction: a batch is these
        blocks one after the other."""
        mark, guard = self.guard(token)
        head = [*begin, *prelude, mark, *progress]
        tail = [guard, *record, *(["COMMIT"] if commit else [])]
        return ["".join(f"{sql};\n" for sql in head), section.sql, f"\n;\n{';'.join(tail)}"], len(head)

    def run_batch(
        self, blocks: Sequence[Block], started: Callable[[int], None], committed: Callable[[int], None]
    ) -> BatchEnd:
        """Every block ``BEGIN ... COMMIT`` in one simple-query message: the server runs them in
        order, each atomic; its first error stops the message and leaves that block's transaction
        aborted (one ROLLBACK clears it). A block's mark (the result holding its token) says it
        started, the next block's mark that it committed; where the message stopped, counting
        results finds the failing block and statement, as in :meth:`run_section`."""
        conn = self._psycopg_connection()
        tokens = [secrets.token_hex(8) for _ in blocks]
        layout = [
            self._block(block.section, block.prelude, block.record, token, ["BEGIN"], True, PROGRESS)
            for block, token in zip(blocks, tokens, strict=True)
        ]
        text = [part for parts, _ in layout for part in [*parts, BETWEEN_BLOCKS]]
        progress = _Progress(tokens, started, committed)
        with conn.lock:
            try:
                outcome = _psycopg.simple_query(conn, text, watch=progress.see)
            except BaseException:  # Ctrl-C (the message cancelled, its results read), a lost connection
                if not conn.closed and progress.failed_at is not None:
                    self._failing_block(progress, blocks, layout)
                elif _psycopg.idle(conn):
                    progress.commit_last()  # it ran to its end before the cancel
                self._end_transaction(conn)
                raise
            if outcome.error is None:
                progress.commit_last()
                return BatchEnd()
            if outcome.failed_at == 0:
                return BatchEnd(unparsed=True)  # a syntax error: the server parses it all first
            self._end_transaction(conn)
        return BatchEnd(self._batch_error(outcome, progress, blocks, layout))

    def _batch_error(
        self,
        outcome: _psycopg.Outcome,
        progress: _Progress,
        blocks: Sequence[Block],
        layout: list[tuple[list[str], int]],
    ) -> StatementError | TransactionEnded:
        """The error of a batch placed in the block it came in, as :meth:`run_section` places
        one: the results and the text before that block left out."""
        failing, begun = self._failing_block(progress, blocks, layout)
        parts, head = layout[failing]
        offset = sum(sum(map(len, before)) + len(BETWEEN_BLOCKS) for before, _ in layout[:failing])
        within = _psycopg.Outcome(
            outcome.error,
            outcome.failed_at - begun,
            [],
            [(index - begun, tag) for index, tag in outcome.ends if index >= begun],
        )
        return self._located(within, blocks[failing].section, parts[0], head, len(blocks[failing].record), offset)

    def _failing_block(
        self, progress: _Progress, blocks: Sequence[Block], layout: list[tuple[list[str], int]]
    ) -> tuple[int, int]:
        """The block a batch's first error came in, and the index of that block's first result:
        the last block that started, unless the error came after its COMMIT (in the next one's
        BEGIN or prelude): then that one is reported committed."""
        assert progress.failed_at is not None
        last = len(progress.marks) - 1
        if last < 0:
            return 0, 0
        block = blocks[last]
        begun = progress.marks[last] - (layout[last][1] - len(PROGRESS)) + 1
        section_at = progress.marks[last] + len(PROGRESS) + 1
        commit_at = section_at + len(self.split(block.section)) + 1 + len(block.record)
        if progress.failed_at <= commit_at or last + 1 == len(blocks):
            return last, begun
        progress.commit_last()
        return last + 1, commit_at + 1

    def _end_transaction(self, conn: Any) -> None:
        """ROLLBACK what a stopped message left open. A connection still busy (an interrupt
        while a result was being handled) is closed: the server rolls back."""
        if conn.closed or _psycopg.idle(conn):
            return
        if _psycopg.busy(conn):
            self.connection.close()
            return
        _psycopg.simple_query(conn, "ROLLBACK")

    def catalog_uses(self, names: Sequence[str]) -> tuple[str, list[tuple[str, str]]]:
        """The views (and materialized views) among ``names`` and the relations and functions
        among them each one's rule uses, from ``pg_depend`` and ``pg_rewrite``: one query."""
        cursor = self.raw_cursor()
        cursor.execute(CATALOG_USES_SQL, [list(names)])
        rows = cursor.fetchall()
        cursor.execute("SELECT pg_catalog.current_schema()")
        return str(cursor.fetchone()[0] or ""), [(row[0], row[1]) for row in rows]

    def drop_statement(self, kind: str, name: str, on: str | None) -> str:
        """A trigger is dropped ``ON`` its table; a function by its name alone (unique in its schema)."""
        if kind == "TRIGGER" and on:
            return f"DROP TRIGGER IF EXISTS {name} ON {on}"
        return super().drop_statement(kind, name, on)

    def guard(self, token: str) -> tuple[str, str]:
        """The statement that marks the migration's transaction with ``token`` (sent ahead of
        the section) and the guard that fails unless the transaction is still that one (sent
        after it, ahead of the history change)."""
        mark = f"SELECT pg_catalog.set_config('{GUARD_SETTING}', '{token}', true)"
        return mark, GUARD_SQL.format(setting=GUARD_SETTING, token=token)

    def _located(
        self, outcome: _psycopg.Outcome, section: Section, head_text: str, head: int, record: int, offset: int = 0
    ) -> StatementError | TransactionEnded:
        """The error of a failed round trip, placed in the prelude, the section (at its file
        line) or the record, with what the section committed if it had ended its transaction
        before. Where the server gives a position (a syntax error, which stops it before it runs
        anything, or a name it cannot resolve), the line comes from it; any other error is
        placed by counting the results before it, one per statement: the section is never run
        a second time to find the line. ``offset``: the characters of the message ahead of this
        block (a batch's earlier blocks)."""
        error = outcome.error
        assert error is not None
        position = max(int(getattr(getattr(error, "diag", None), "statement_position", None) or 0) - offset, 0)
        if position and position <= len(head_text):
            return StatementError(error, None, part="prelude")
        index = outcome.failed_at - head
        if index < 0 and position:  # a syntax error: the server ran nothing
            return StatementError(error, self._error_line(error, section, offset + len(head_text)))
        if index < 0:
            return StatementError(error, None, part="prelude")
        statements = self.split(section)
        ended = self._ending(outcome, statements, head, min(index, len(statements)))
        if index == len(statements) and GUARD_MARK in str(error):
            return TransactionEnded(ended or Ending(None, "COMMIT or ROLLBACK", ()))
        if len(statements) < index <= len(statements) + record:
            return StatementError(error, None, part="record", ended=ended)
        if position:
            return StatementError(error, self._error_line(error, section, offset + len(head_text)), ended=ended)
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

    def in_transaction(self) -> bool:
        """Whether the server session is inside a transaction block."""
        return bool(self._psycopg_connection().info.transaction_status.name != "IDLE")

    def _psycopg_connection(self) -> Any:
        """The psycopg 3 connection under Django's, connected."""
        self.connection.ensure_connection()
        return self.connection.connection

    @staticmethod
    def _error_line(exc: Exception, section: Section, offset: int = 0) -> int | None:
        """The file line of the server's error position, ``offset`` characters sent ahead."""
        position = int(getattr(getattr(exc, "diag", None), "statement_position", None) or 0) - offset
        if position <= 0:
            return None
        return section.line + section.sql.count("\n", 0, position - 1)

    def timeout_statements(self, timeouts: Timeouts, local: bool) -> list[str]:
        """``SET [LOCAL] lock_timeout / statement_timeout`` for the migration's durations."""
        scope = "SET LOCAL" if local else "SET"
        values = {"lock_timeout": timeouts.lock, "statement_timeout": timeouts.statement}
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
        something (benchmarks/README.md has the figures). ``sqlmigrate.schema``, which a tenant's
        ``no-transaction`` migration sets for the session, is reset too: ``pg_settings`` does not
        list such settings."""
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
            " AND s.setting IS DISTINCT FROM COALESCE(start.setting, s.reset_val);\n"
            f"RESET {SCHEMA_SETTING}",
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
        new connection instead would make each verified migration slower: a new backend starts
        with cold catalog caches (benchmarks/README.md has the figures). What only a new
        connection would drop: a database or role setting a step changed (``ALTER DATABASE ...
        SET``), connections a step opened to other servers (``dblink``, ``postgres_fdw``). A lost
        connection is closed."""
        try:
            self.raw_cursor().execute("DISCARD ALL")
            self.connection.init_connection_state()
        except database_error_types(self.connection):
            self.connection.close()

    def execute(self, cursor: Any, sql: str) -> None:
        """Run ``sql`` (one or more statements) in one round trip, with the BEGIN psycopg would
        send first if a transaction is due; raise its first error."""
        conn = self._psycopg_connection()
        with conn.lock:
            begin = "".join(f"{statement};\n" for statement in _psycopg.begin_statements(conn))
            error = _psycopg.simple_query(conn, begin + sql).error
        if error is not None:
            raise error

    def is_lock_timeout(self, error: BaseException) -> bool:
        """SQLSTATE 55P03, ``lock_not_available``."""
        return sqlstate(error) == LOCK_NOT_AVAILABLE

    def connection_lost(self, error: BaseException | None = None) -> bool:
        """Also when ``error`` is the server ending the session (SQLSTATE 57P01-57P03): the
        socket may not be seen closed yet."""
        return sqlstate(error) in SESSION_ENDED or super().connection_lost(error)


def _batch_rows(tenants: list[str], results: list[tuple[Any, ...]], expecting: bool) -> dict[str, TenantRows]:
    """The :data:`TENANT_ROWS` results of one batch of ``tenants``, by tenant. An empty table sends
    no row: it holds what is expected only when nothing is (not ``expecting``)."""
    rows: dict[int, list[tuple[str, str, str]]] = {}
    matching = set()
    for index, matches, migration_id, name, checksum in results:
        if matches:
            matching.add(index)
        else:
            rows.setdefault(index, []).append((migration_id, name, checksum))
    found = {}
    for index, tenant in enumerate(tenants):
        held = tuple(rows.get(index, ()))
        found[tenant] = TenantRows(index in matching or (not held and not expecting), held)
    return found


def throwaway_name(base: str, token: str) -> str:
    """``<base>_verify_<token>``, ``base`` cut so the whole fits PostgreSQL's 63 bytes."""
    suffix = f"_verify_{token}"
    cut = base.encode()[: MAX_NAME - len(suffix)].decode(errors="ignore")
    return cut + suffix


class PostgresServer(ThrowawayPlace):
    """Throwaway databases on a connection's server, created and dropped as Django's test runner
    does it: through a connection to the ``postgres`` database (Django's own ``_nodb_cursor``,
    which falls back to the configured database when ``postgres`` cannot be reached), named
    after ``TEST``'s ``NAME``, with ``TEST``'s ``TEMPLATE``, ``CHARSET`` and ``COLLATION``; the
    marker a ``COMMENT ON DATABASE``."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        super().__init__()
        self.connection = connection
        self.creating: dict[str, int] = {}  # a CREATE DATABASE not known to have ended: its server process

    def new_name(self, settings: dict[str, Any]) -> str:
        """``TEST``'s ``NAME`` (or ``test_`` + ``NAME``) + ``_verify_`` + a random token."""
        base = settings.get("TEST", {}).get("NAME") or f"test_{settings['NAME']}"
        return throwaway_name(base, secrets.token_hex(4))

    def create(self, name: str, marker: str) -> None:
        """``CREATE DATABASE`` with the options of ``TEST``, then the marker (a database that
        cannot be marked is dropped by the cleanup)."""
        quoted = self.connection.ops.quote_name(name)
        with self.connection._nodb_cursor() as cursor:
            cursor.execute("SELECT pg_catalog.pg_backend_pid()")
            self.creating[name] = cursor.fetchone()[0]
            self.asked.add(name)
            try:
                cursor.execute(f"CREATE DATABASE {quoted}{self.connection.creation.sql_table_creation_suffix()}")
            except DjangoDatabaseError as exc:
                self.asked.discard(name)  # the server said no: nothing to drop (it may be someone else's)
                raise self._refusal(name, exc) from exc
            del self.creating[name]
            try:
                cursor.execute(f"COMMENT ON DATABASE {quoted} IS '{marker}'")
            except DjangoDatabaseError as exc:
                raise ThrowawayDatabaseError(
                    f"database {self.connection.alias!r}: cannot mark the throwaway database {name} as verify's: "
                    f"{database_message(exc)}"
                ) from exc
        self.made_and_marked.add(name)

    def _refusal(self, name: str, error: DjangoDatabaseError) -> ThrowawayDatabaseError:
        alias = self.connection.alias
        user = self.connection.settings_dict.get("USER") or "the connecting role"
        if sqlstate(error) == INSUFFICIENT_PRIVILEGE:
            return ThrowawayDatabaseError(
                f"database {alias!r}: role {user} may not create the throwaway database {name} that verify "
                f"works in ({database_message(error)}); grant it CREATEDB (ALTER ROLE ... CREATEDB), or run verify "
                "against a server where it may (in CI, the one the tests use)"
            )
        return ThrowawayDatabaseError(
            f"database {alias!r}: cannot create the throwaway database {name}: {database_message(error)}"
        )

    def drop(self, name: str) -> None:
        """``DROP DATABASE IF EXISTS``, forcing out any session a migration left connected
        (``dblink``); after an interrupted ``CREATE DATABASE``, once that has ended."""
        quoted = self.connection.ops.quote_name(name)
        try:
            with self.connection._nodb_cursor() as cursor:
                if name in self.creating:
                    self._end_create(cursor, self.creating[name], quoted)
                cursor.execute("SELECT current_setting('server_version_num')::int")
                force = " WITH (FORCE)" if cursor.fetchone()[0] >= 130000 else ""
                cursor.execute(f"DROP DATABASE IF EXISTS {quoted}{force}")
        except DjangoDatabaseError as exc:
            raise ThrowawayDatabaseError(f"could not drop it: {database_message(exc)}") from exc

    def _end_create(self, cursor: Any, backend: int, quoted: str) -> None:
        """End the server process of an interrupted ``CREATE DATABASE`` and wait until it has gone.
        An interrupt stops the client's wait, not always the server's work: psycopg closes the
        connection when a second Ctrl-C cuts its cancel short, and the database may appear after
        a ``DROP DATABASE IF EXISTS`` that found nothing. Terminated mid-way it makes nothing."""
        running = "FROM pg_catalog.pg_stat_activity WHERE pid = %s AND query LIKE %s"
        params = [backend, f"CREATE DATABASE {quoted}%"]
        cursor.execute(f"SELECT pg_catalog.pg_terminate_backend(pid) {running}", params)
        deadline = time.monotonic() + CREATE_END_WAIT
        while True:
            cursor.execute(f"SELECT 1 {running}", params)
            if cursor.fetchone() is None:
                return
            if time.monotonic() > deadline:
                raise ThrowawayDatabaseError(f"could not drop it: its CREATE DATABASE (process {backend}) did not end")
            time.sleep(0.01)

    def marked_unused(self, marker_start: str) -> list[tuple[str, str]]:
        """The server's databases named like throwaway ones, marked, of this role, without a session."""
        with contextlib.suppress(DjangoDatabaseError), self.connection._nodb_cursor() as cursor:
            cursor.execute(LEFTOVERS, ["%\\_verify\\_%", marker_start + "%"])
            return [(name, marker) for name, marker in cursor.fetchall()]
        return []

    def drop_unused(self, name: str) -> bool:
        """A plain ``DROP DATABASE`` (never ``FORCE``): one that someone connects to meanwhile stays."""
        try:
            with self.connection._nodb_cursor() as cursor:
                cursor.execute(f"DROP DATABASE {self.connection.ops.quote_name(name)}")
        except DjangoDatabaseError:
            return False  # someone connected, or it cannot be dropped: not ours to force
        return True

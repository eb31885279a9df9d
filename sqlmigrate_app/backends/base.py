"""The interface sqlmigrate needs of a database, and what every database shares.

One subclass per database (:mod:`.postgresql`, :mod:`.sqlite`) owns every decision that depends
on the database, as dbmate's drivers do: how to lock a run, split SQL into statements, run a
section with the statements sent ahead of it and keep the session's settings; whether the history
table exists; which reader takes the schema; where verify's throwaway databases are made; how
the ``--sql`` script is run by hand; which errors are a lock timeout or a lost connection; whether
squawk lints its SQL; whether it has tenant schemas, how a tenant's migrations are placed in
one, how the histories of many are read at once, how many more connections the server takes
and how a running query is cancelled from another thread. Nothing outside this package asks
which database it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from django.db.backends.base.base import BaseDatabaseWrapper

from ..errors import ConfigurationError, driver_error
from ..files import Section, Timeouts
from ..statements import Statement, transaction_control

if TYPE_CHECKING:
    from ..snapshot.model import Reader

__all__ = [
    "Backend",
    "BatchEnd",
    "Block",
    "Ending",
    "HistoryName",
    "HistoryRows",
    "TenantRows",
    "StatementError",
    "ThrowawayPlace",
    "TransactionEnded",
    "driver_error",
    "ended_by",
]


class HistoryName(NamedTuple):
    """A history table: its name, its name quoted (with the schema the run pinned, if any), and
    the tenant schema it is in (None: the shared set's)."""

    table: str
    qualified: str
    tenant: str | None = None


class HistoryRows(NamedTuple):
    """The history table as ``SELECT *`` read it: its column names (so that its shape is
    checked by the same query) and its rows."""

    columns: list[str]
    rows: Iterable[Sequence[Any]]


# How many history rows are fetched at a time: 10 ms for 10,000 rows, 15 to 17 one by one.
ROWS_PER_FETCH = 1000


class Block(NamedTuple):
    """One migration's transaction in a batch: the statements sent ahead of its section (its
    timeouts), the section, and the history change sent after it."""

    prelude: Sequence[str]
    section: Section
    record: Sequence[str]


class BatchEnd(NamedTuple):
    """How a batch ended. Its first blocks committed (the backend said so as each did); the
    next one, if any, failed with ``error`` (located as :meth:`Backend.run_section` locates it)
    and was rolled back, and none after it ran. ``unparsed`` when the server refused the whole
    message before running any of it (a syntax error, wherever it is): nothing ran."""

    error: Exception | None = None
    unparsed: bool = False


class TenantRows(NamedTuple):
    """A tenant's history rows as one read of many tenants' found them: ``matches`` when they
    are exactly the expected ``(id, checksum)`` pairs (and then none is sent), else every row,
    ``(id, name, checksum)``."""

    matches: bool
    rows: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class Ending:
    """The migration's SQL ended its own transaction (a ``COMMIT`` or ``ROLLBACK`` the checks at
    load did not see): the statement that did, on ``line``, and the file lines of the statements
    that were committed with it, without the history row. The history row is written last, after
    a check that the transaction is still the migration's own, so it is never committed with
    part of the SQL."""

    line: int | None
    statement: str
    committed: tuple[int, ...]

    def outcome(self) -> str:
        """What became of the migration, for its error message."""
        where = f" on line {self.line}" if self.line else ""
        if not self.committed:
            return (
                f"its own '{self.statement}'{where} ended the migration's transaction; nothing of it was committed "
                "or recorded"
            )
        return (
            f"its own '{self.statement}'{where} ended the migration's transaction and committed the statements of "
            f"{_lines(self.committed)} without a history row; the rest was rolled back and it is not recorded as "
            "applied: check what those statements did before running it again"
        )


def _lines(lines: tuple[int, ...]) -> str:
    """``line 3`` or ``lines 3-5, 8``."""
    runs: list[list[int]] = []
    for line in sorted(set(lines)):
        if runs and line == runs[-1][-1] + 1:
            runs[-1].append(line)
        else:
            runs.append([line])
    text = ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)
    return f"line {text}" if len(lines) == 1 else f"lines {text}"


class TransactionEnded(Exception):
    """The section ended the migration's transaction and nothing else failed (see :class:`Ending`)."""

    def __init__(self, ending: Ending) -> None:
        super().__init__(ending.outcome())
        self.ending = ending


class StatementError(Exception):
    """A database error while running a step, with the file line it came from (if known).

    ``part`` says which of the step's statements failed: the ``prelude`` sent ahead of the
    section (its timeouts), the ``section`` (the migration's SQL) or the ``record`` (the history
    change, sent after it). ``ended`` when the section had ended its transaction before failing.
    """

    def __init__(
        self,
        error: Exception,
        line: int | None,
        part: Literal["prelude", "section", "record"] = "section",
        ended: Ending | None = None,
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.line = line
        self.part = part
        self.ended = ended


def _fetched(cursor: Any) -> Iterator[Sequence[Any]]:
    """A cursor's rows, :data:`ROWS_PER_FETCH` at a time; the cursor closed at the end."""
    with cursor:
        while rows := cursor.fetchmany(ROWS_PER_FETCH):
            yield from rows


def ended_by(statement: Statement, ran: list[Statement]) -> Ending:
    """How ``statement``, the last of ``ran``, ended the migration's transaction, run one by one:
    a ``COMMIT`` committed every statement that ran, a ``ROLLBACK`` none."""
    name = " ".join(statement.sql.split()[:2]).rstrip(";")
    committed = tuple(s.line for s in ran) if transaction_control(statement.sql) == "commit" else ()
    return Ending(statement.line, name, committed)


class Backend(ABC):
    """What sqlmigrate needs of a database. The concrete methods run any DB-API database
    statement by statement; a subclass overrides what its database does better."""

    # The current time in UTC as a value of the history's executed_at column (a time without zone).
    utc_now_sql = "CURRENT_TIMESTAMP"
    # Whether :meth:`in_transaction` is true to the server, so a section that ends its own
    # transaction is caught statement by statement (a driver that cannot tell: no).
    tells_transaction_state = False
    # How a person runs the ``--sql`` script by hand, stopping at the first error (its header says).
    run_by_hand: ClassVar[str]
    # Whether squawk, which knows PostgreSQL's SQL, can lint this database's (``sqlmigrate_lint``).
    lintable: ClassVar[bool] = False
    # Whether the database has schemas a tenant's migrations can run in (SQLite has none).
    has_schemas: ClassVar[bool] = False
    # Whether each transaction may run on another server session (a transaction pooler): then no
    # run-wide lock, nothing left on a session, and no ``no-transaction`` migration.
    transaction_pooled = False
    # Whether several migrations' transactions can travel in one message (:meth:`run_batch`).
    sends_batches: ClassVar[bool] = False

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection

    def raw_cursor(self) -> Any:
        """A DB-API cursor, bypassing Django's wrapper: no SQL logging, no ``%`` handling."""
        self.connection.ensure_connection()
        return self.connection.connection.cursor()

    # The history table -----------------------------------------------------------------------

    @abstractmethod
    def history_table_exists(self, table: str, qualified: str, tenant: str | None = None) -> bool:
        """Whether the history table ``table`` (``qualified``: quoted, with the schema the run
        pinned, if any) is there: one catalog lookup of this one name, never a list of every
        table (a database with 10,000 migrations may hold 10,000 tables). With ``tenant``, the
        schema of a tenant's history, ``MissingSchema`` when that schema does not exist."""

    def read_history(self, history: HistoryName) -> HistoryRows | None:
        """Every row of the history table; None when there is none. Here: the lookup, then
        ``SELECT *``."""
        if not self.history_table_exists(*history):
            return None
        cursor = self.connection.cursor()
        cursor.execute(f"SELECT * FROM {history.qualified}")
        return HistoryRows([column[0] for column in cursor.description], _fetched(cursor))

    # Tenants: a set of migrations run in each of many schemas ------------------------------------

    def schemas_unsupported(self) -> ConfigurationError:
        """The one line that says this database has no tenant schemas."""
        return ConfigurationError(
            f"database {self.connection.alias!r} is {self.connection.display_name}: tenant schemas "
            "(SQLMIGRATE_TENANT_DIR, --tenants, --tenant) are a PostgreSQL feature"
        )

    def schema_statements(self, tenant: str | None, local: bool) -> list[str]:
        """The statements that run a migration in a ``tenant``'s schema: that schema first on the
        search path, the session's own after it, and its name in the ``sqlmigrate.schema``
        setting; for the migration's transaction only with ``local``. None without a tenant."""
        if tenant is None:
            return []
        raise self.schemas_unsupported()

    def create_schema(self, tenant: str) -> None:
        """Create a tenant's schema unless it exists."""
        raise self.schemas_unsupported()

    def tenant_django_migrations(self, tenant: str) -> set[tuple[str, str]] | None:
        """The ``(app, name)`` of each row of Django's history table in a tenant's schema
        (django-tenants keeps one in each); None when that schema has none."""
        raise self.schemas_unsupported()

    def tenant_tables(self, table: str, tenants: Sequence[str]) -> list[tuple[bool, tuple[str, ...] | None]]:
        """Of each of ``tenants``, in order: whether its schema exists, and the column names of
        its history table ``table`` (None: no such table), in one catalog query."""
        raise self.schemas_unsupported()

    def tenant_rows(self, table: str, tenants: Sequence[str], expected: dict[str, str]) -> dict[str, TenantRows]:
        """The history rows of each of ``tenants`` (each has the table, of the right shape),
        compared with the ``expected`` checksums by id (the files'): a few queries whatever the
        number of tenants, and no row sent for a table that holds exactly what is expected."""
        raise self.schemas_unsupported()

    def spare_connections(self) -> int | None:
        """How many more connections the server takes from this user now (None: no limit known)."""
        return None

    def cancel(self) -> None:
        """Stop the statement running on this connection, from another thread (a fleet's
        Ctrl-C): it fails, and its migration is rolled back. Nothing when none runs."""
        raw = self.connection.connection
        interrupt = getattr(raw, "interrupt", None)  # sqlite3's
        if interrupt is not None:
            interrupt()

    # The run -------------------------------------------------------------------------------

    def history_schema(self, locking: bool = False) -> str | None:
        """The schema the history table lives in for this run (None: the database has no
        schemas). ``locking``: :meth:`lock` follows at once, and may begin in the same round trip
        (then :meth:`lock_abandoned` if it does not follow after all)."""
        return None

    def lock_abandoned(self) -> None:
        """What ``history_schema(locking=True)`` began for the lock is undone: no lock follows.
        Nothing here."""
        return None

    @abstractmethod
    def lock(
        self,
        schema: str | None,
        table: str,
        timeout: float | None,
        on_wait: Callable[[], None],
        read: HistoryName | None = None,
    ) -> AbstractContextManager[HistoryRows | None]:
        """Hold the run-wide lock of one history table while the context is open; call
        ``on_wait`` once if another runner has it, and raise ``LockTimeout`` after ``timeout``
        seconds (None: wait as long as it takes). With ``read``, the context is that history
        as :meth:`read_history` reads it once the lock is held (with the lock where the
        database allows: one round trip)."""

    def transaction_lock(self) -> list[str]:
        """The statements that take the run lock for the current transaction only, where the
        run holds no lock of its own (a transaction-pooled alias): what creates the history
        table or repairs it then runs them first. None here."""
        return []

    def claim_statements(self, condition: str) -> list[str]:
        """The statements that open a migration's transaction while the run lock is held: take
        that lock for the transaction, then fail unless ``condition`` (the history as the plan
        expects it, see :meth:`~..history.HistoryTable.premise`) holds, which
        :meth:`history_changed` tells. None where the run lock alone excludes other runners
        (SQLite's ``flock``)."""
        return []

    def history_changed(self, error: BaseException) -> bool:
        """Whether ``error`` is the failure of :meth:`claim_statements`' condition."""
        return False

    def claim_error(self, error: BaseException) -> Exception | None:
        """What a failure of a migration's :meth:`claim_statements` says about the connection,
        as a one-line error (a pooler the alias does not declare, a wait for the lock that timed
        out); None for any other error."""
        return None

    def pooler_refusal(self, error: BaseException) -> Exception | None:
        """The one-line refusal of a connection pooler that cannot run migrations, when ``error``
        is its (None: any other error, or a database no pooler stands before)."""
        return None

    # Statements ----------------------------------------------------------------------------

    @abstractmethod
    def split(self, section: Section) -> list[Statement]:
        """The section's statements, each with its file line, as this database reads them."""

    def run_section(
        self,
        cursor: Any,
        section: Section,
        prelude: Sequence[str] = (),
        record: Sequence[str] = (),
        may_commit: bool = False,
    ) -> int:
        """Run the ``prelude`` statements, the section statement by statement, then the
        ``record`` statements (the history change last), inside the current transaction; return
        the rows the history change touched. With ``may_commit`` nothing else will run in this transaction,
        so a backend may commit it (Django's own commit then finds nothing to do). Raises
        :class:`StatementError`, or :class:`TransactionEnded` when the section ended the
        transaction itself (where the backend can tell: :attr:`tells_transaction_state`)."""
        self.run_prelude(cursor, prelude)
        ran: list[Statement] = []
        for statement in self.split(section):
            self.run_statements(cursor, [statement], ran)
            if self.tells_transaction_state and not self.in_transaction():
                raise TransactionEnded(ended_by(statement, ran))
        try:
            for sql in record:
                cursor.execute(sql)
        except driver_error(self.connection) as exc:
            raise StatementError(exc, None, part="record") from exc
        return int(cursor.rowcount)

    def catalog_uses(self, names: Sequence[str]) -> tuple[str, list[tuple[str, str]]] | None:
        """What the catalog says of the objects named ``names`` (last parts, lower-case): the
        current schema, and each ``(view, what it uses)`` pair among them, schema-qualified and
        lower-case. None where the catalog does not tell (SQLite checks nothing at creation)."""
        return None

    def drop_statement(self, kind: str, name: str, on: str | None) -> str:
        """The statement that drops the object ``name`` of ``kind`` (``VIEW``, ``TRIGGER``: ``on``
        its table) if it exists, never ``CASCADE``: a repeatable migration's dependent dropped
        before it is re-created."""
        return f"DROP {kind} IF EXISTS {name}"

    def batchable(self, section: Section) -> bool:
        """Whether ``section`` may travel in a batch with other migrations (see :meth:`run_batch`)."""
        return False

    def run_batch(
        self, blocks: Sequence[Block], started: Callable[[int], None], committed: Callable[[int], None]
    ) -> BatchEnd:
        """Run ``blocks``, each in a transaction of its own, in one message, outside any
        transaction; call ``started`` and ``committed`` with a block's index as its results
        arrive. A failure stops the message there: the blocks before it stay committed, the
        failing one is rolled back and the later ones never run. On Ctrl-C the message is
        cancelled, the same holds, and the interrupt is raised. Only where :attr:`sends_batches`."""
        raise NotImplementedError

    def identity_statements(self, state: Any) -> list[str]:
        """Statements that give the rest of the transaction the user and role of ``state`` (see
        :meth:`session_state`; None: the ones the session started with), so that a section that
        changed them does not record its own history row as another user; none where there are
        no roles."""
        return []

    def guard(self, token: str) -> tuple[str, str] | None:
        """Statements that catch a section ending its own transaction in a backend that sends it
        whole: one marking the transaction with ``token`` before the section, one failing after
        it unless the transaction is still that one; None where statements run one by one."""
        return None

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
                raise StatementError(exc, None, part="prelude") from exc
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

    def timeout_statements(self, timeouts: Timeouts, local: bool) -> list[str]:
        """The statements that apply a migration's ``timeouts`` (see :meth:`~..files.Migration.timeouts`),
        for its transaction only with ``local``; none where the database has no such timeouts."""
        return []

    # The session ---------------------------------------------------------------------------

    @abstractmethod
    def session_state(self) -> Any:
        """What :meth:`restore_session` needs to undo a migration's session-level settings
        (``SET``, ``set_config``, ``PRAGMA``), as the run found them."""

    @abstractmethod
    def restore_session(self, state: Any) -> None:
        """Put the session's settings back as :meth:`session_state` found them."""

    # The schema and verify's throwaway databases -----------------------------------------------

    @abstractmethod
    def read_only(self) -> AbstractContextManager[None]:
        """One transaction that only reads, and sees the database at one moment: what
        ``sqlmigrate_drift`` reads of its target (the history, Django's, the catalog) is read in
        it, so the database refuses any write and the readings agree. Nested in a transaction
        already open, a savepoint of it (its snapshot is that transaction's)."""

    @abstractmethod
    def schema_reader(self, history_table: str) -> Reader:
        """A reader of the database's schema, the history table ``history_table`` left out
        (see :mod:`sqlmigrate_app.snapshot`)."""

    @abstractmethod
    def throwaway_place(self) -> ThrowawayPlace:
        """Where verify makes throwaway databases like this one (see :mod:`sqlmigrate_app.throwaway`)."""

    # The script ``--sql`` prints ------------------------------------------------------------

    def script_session_start(self) -> list[str]:
        """What a script runs first so that its session starts as a run's does (none: as the
        database's own client starts one)."""
        return []

    def script_session_reset(self) -> list[str]:
        """What a script runs after a migration that may have changed session settings, as the
        runner runs :meth:`restore_session` (none: nothing is kept)."""
        return []

    def script_sql(self, sql: str, path: Path, first_line: int) -> str:
        """``sql``, a section's from file line ``first_line``, as the database's own client must
        read it to send the server the same SQL; ``MigrationFileError`` when no change can."""
        return sql

    def reset_session(self) -> None:
        """Leave nothing of this session to the next statement: no temporary table, prepared
        statement, setting, lock or ``ATTACH``, as if a new command had connected (what verify
        does between the steps it checks). Here: close the connection; the next query opens one."""
        self.connection.close()

    def in_transaction(self) -> bool:
        """Whether the session is inside a transaction (a ``no-transaction`` migration's own
        ``BEGIN``) that a failure left open."""
        return bool(getattr(self.connection.connection, "in_transaction", False))  # sqlite3's

    # Errors -----------------------------------------------------------------------------------

    def is_lock_timeout(self, error: BaseException) -> bool:
        """Whether ``error`` is the database giving up on a lock after the migration's lock
        timeout (a transactional migration so stopped was rolled back whole and may be tried
        again). Never here: a database without a lock timeout."""
        return False

    def connection_lost(self, error: BaseException | None = None) -> bool:
        """True when the connection is gone, or ``error`` says the server is ending it (the
        socket may not be seen closed yet). A connection error of another connection the SQL
        makes (``CREATE SUBSCRIPTION``, ``dblink``) is an ordinary error: this session goes on."""
        raw = self.connection.connection
        return raw is None or bool(getattr(raw, "closed", False) or getattr(raw, "broken", False))


class ThrowawayPlace(ABC):
    """Where verify's throwaway databases are made for one database (dbmate's ``CreateDatabase``
    and ``DropDatabase``): a server, a directory. It remembers what it made: ``may_exist`` from
    the moment it asks for one (an interrupt may come before the answer) until it is refused,
    ``marked`` once the marker is written. What a marker says, and which leftovers are over, is
    :mod:`sqlmigrate_app.throwaway`'s."""

    def __init__(self) -> None:
        self.asked: set[str] = set()
        self.made_and_marked: set[str] = set()

    @abstractmethod
    def new_name(self, settings: dict[str, Any]) -> str:
        """A name no other run picks, for a database like the one of ``settings``."""

    @abstractmethod
    def create(self, name: str, marker: str) -> None:
        """Make the database and mark it; ``ThrowawayDatabaseError`` when it cannot be."""

    @abstractmethod
    def drop(self, name: str) -> None:
        """Drop it (nothing when it is not there); ``ThrowawayDatabaseError`` when that fails."""

    @abstractmethod
    def marked_unused(self, marker_start: str) -> list[tuple[str, str]]:
        """The name and marker of each database here named as throwaway ones are and marked
        with a text that starts with ``marker_start``, of this user, that nobody uses (as far
        as can be told); none when that cannot be asked (creating the new one says why)."""

    @abstractmethod
    def drop_unused(self, name: str) -> bool:
        """Drop a leftover found by :meth:`marked_unused`, unless someone uses it meanwhile;
        whether it is gone. Never forced, never an error."""

    def may_exist(self, name: str) -> bool:
        """Whether this run may have made ``name`` (so it must drop it)."""
        return name in self.asked

    def marked(self, name: str) -> bool:
        """Whether this run made and marked ``name`` (so a later run may drop it)."""
        return name in self.made_and_marked

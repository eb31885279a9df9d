"""Every error sqlmigrate raises, one class per kind of problem.

Each says in one line what is wrong, where, and the fix. The problems ``validate`` and
``status --check`` report carry a :class:`ProblemKind`, so exit codes, ``Problem.kind``,
``--json`` and the admin all key off one definition.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import django.db
from django.db.backends.base.base import BaseDatabaseWrapper

if TYPE_CHECKING:
    from .files import Migration

F = TypeVar("F", bound=Callable[..., Any])


def plural(count: int, noun: str) -> str:
    """``1 migration``, ``2 migrations``: how every message counts."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def printable(text: str) -> str:
    """``text`` with each character a terminal would act on rather than show (a newline, a tab,
    an escape, a bidirectional override) written as a Python string literal writes it (``\\n``,
    ``\\x1b``, ``\\u202e``): text sqlmigrate did not write (a history row of another tool,
    squawk's output) cannot fake a line of output or recolour the terminal."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class ProblemKind(str, Enum):
    """What keeps a database from being up to date, or its files from being valid."""

    PENDING = "pending"
    OUT_OF_ORDER = "out_of_order"
    MODIFIED = "modified"
    MISSING = "missing"
    BAD_FILE = "bad_file"
    HISTORY_TABLE = "history_table"
    LINT = "lint"  # squawk found something (``validate --lint``)

    def __str__(self) -> str:
        return self.value


class SqlMigrateError(Exception):
    """A problem with the files, the history, the settings or the database that the user has to
    fix. ``kind`` is None for the ones that are not a state of files and history (exit code 1).
    ``path`` and ``line`` say where, for an error about one file (None: not one file's, or no
    line): what a fleet's ``--json`` reports of a tenant's failure."""

    kind: ProblemKind | None = None
    path: Path | None = None
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """``{"file", "line", "message"}``: a fleet's ``--json`` error of one tenant."""
        return {"file": str(self.path) if self.path else None, "line": self.line, "message": str(self)}


class ConfigurationError(SqlMigrateError):
    """A setting, a database alias or a command-line value that cannot be used."""


class MigrationFileError(SqlMigrateError):
    """A migration file (or the directory) the user has to fix; says where."""

    kind = ProblemKind.BAD_FILE
    path: Path

    def __init__(self, path: Path, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.line = line

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


class EmptyMigration(MigrationFileError):
    """A migration whose UP section holds no SQL, and no ``empty`` directive says that is meant.
    The system check only warns of it: a file fresh from ``sqlmigrate_create`` must not stop
    ``runserver``; ``up`` and ``validate`` refuse it."""


class UnmetRequirement(SqlMigrateError):
    """A migration needs a Django migration that is not applied (or does not exist)."""


class HistoryTableError(SqlMigrateError):
    """The history table cannot be used as it is (another tool's table, a bad name)."""

    kind = ProblemKind.HISTORY_TABLE


class MissingSchema(SqlMigrateError):
    """A tenant's schema does not exist (sqlmigrate never creates one, but for
    :func:`~sqlmigrate_app.fleet.migrate_tenant`, which is asked to)."""

    def __init__(self, using: str, schema: str) -> None:
        super().__init__(
            f"database {using!r}: schema {schema!r} does not exist; create it (or bring a new tenant up with "
            "sqlmigrate_app.fleet.migrate_tenant, which does), or leave it out of SQLMIGRATE_TENANTS"
        )
        self.schema = schema


class ModifiedMigration(SqlMigrateError):
    """An applied migration's file changed since it ran. ``doing`` says what this stops."""

    kind = ProblemKind.MODIFIED

    def __init__(self, migration: Migration, recorded: str, doing: str = "") -> None:
        super().__init__(
            f"{migration.path}: {doing}changed since it was applied (checksum {migration.checksum[:12]}, "
            f"recorded {recorded[:12]}); restore it and put the change in a new migration, or if the edit "
            f"was reviewed and the schema is right, record it with 'manage.py sqlmigrate_repair {migration.id}'"
        )
        self.migration = migration
        self.path = migration.path


class MissingMigration(SqlMigrateError):
    """An applied migration has no file any more. ``doing`` says what this stops."""

    kind = ProblemKind.MISSING

    def __init__(self, migration_id: str, directory: Path, doing: str = "") -> None:
        super().__init__(
            f"{directory / (migration_id + '.sql')}: {doing}migration {migration_id} was applied but its file is "
            f"missing from {directory}"
        )
        self.migration_id = migration_id
        self.path = directory / (migration_id + ".sql")


class OutOfOrderMigration(SqlMigrateError):
    """A pending migration is older than the newest applied one (a branch merged late)."""

    kind = ProblemKind.OUT_OF_ORDER

    def __init__(self, migration: Migration, newest_applied: str) -> None:
        super().__init__(
            f"{migration.path}: pending migration is older than the newest applied one ({newest_applied}); "
            "rename it to a newer timestamp, or apply it with --allow-out-of-order"
        )
        self.migration = migration
        self.path = migration.path


class UnknownMigration(SqlMigrateError):
    """A migration named on the command line (``--to``, an id) is nowhere to be found."""

    def __init__(self, migration_id: str, where: str, option: str = "--to ", closest: str | None = None) -> None:
        hint = f"; did you mean {closest}?" if closest else ""
        super().__init__(f"{option}{migration_id}: no such migration in {where}{hint}")
        self.migration_id = migration_id


class IrreversibleMigration(SqlMigrateError):
    """A rollback would need migrations whose ``-- DOWN`` section is empty: all of them are named."""

    def __init__(self, migrations: list[Migration]) -> None:
        if len(migrations) == 1:
            [migration] = migrations
            message = f"{migration.path}: cannot roll back {migration.id}: its -- DOWN section is empty"
        else:
            named = ", ".join(str(migration.path) for migration in migrations)
            message = f"cannot roll back {len(migrations)} migrations: their -- DOWN sections are empty: {named}"
        super().__init__(message)
        self.migrations = migrations
        self.path = migrations[0].path if len(migrations) == 1 else None


class InvalidRollback(SqlMigrateError):
    """A number of migrations to roll back that cannot be: less than 1, more than applied, or
    given together with ``--to``."""


class InvalidRepair(SqlMigrateError):
    """``sqlmigrate_repair`` was asked to repair a migration whose history row is right."""


class LockTimeout(SqlMigrateError):
    """Another runner held the run-wide lock longer than this one would wait (``--wait``,
    ``MigrationRunner(lock_wait_timeout=...)``)."""


class UnsupportedPooler(SqlMigrateError):
    """The database is reached through a connection pooler in a mode no migration can run in
    (PgBouncer's statement mode): exit code 15."""


class HistoryMoved(SqlMigrateError):
    """The history changed under a run that has no run-wide lock (a transaction-pooled alias)
    in a way it cannot go on from (``redo``): run the command again."""


class MigrationFailed(SqlMigrateError):
    """A migration's SQL failed; the message says what became of it (rolled back, or for a
    ``no-transaction`` migration which statements had run). ``sqlstate`` is the database's
    error code (None where it gives none); ``lock_timed_out`` when it failed only because it
    waited longer than its lock timeout and was rolled back whole, so trying again is safe;
    ``line`` the file line of the statement that failed, when known."""

    def __init__(
        self,
        migration: Migration,
        message: str,
        sqlstate: str | None = None,
        lock_timed_out: bool = False,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.migration = migration
        self.sqlstate = sqlstate
        self.lock_timed_out = lock_timed_out
        self.path = migration.path
        self.line = line


class DatabaseError(SqlMigrateError):
    """A query of sqlmigrate's own failed in the database (reading the history or the catalog,
    connecting): the database's message in one line after ``where`` (by default ``database
    'alias'``). The driver's error is ``error`` and the ``__cause__``; ``sqlstate`` its code
    (None where the driver gives none, as sqlite3's)."""

    def __init__(self, using: str, error: BaseException, where: str | None = None) -> None:
        super().__init__(f"{where or f'database {using!r}'}: {database_message(error)}")
        self.using = using
        self.error = _driver_error_of(error)
        self.sqlstate = sqlstate(error)


class ThrowawayDatabaseError(SqlMigrateError):
    """The throwaway database ``sqlmigrate_verify`` works in cannot be made (or dropped)."""


class SchemaFileError(SqlMigrateError):
    """The schema file (``SQLMIGRATE_SCHEMA_FILE``, ``dump --output``) cannot be written or read;
    the message names it and says why."""


class LintUnavailable(SqlMigrateError):
    """squawk, which ``sqlmigrate_lint`` runs, is not installed or cannot run."""


class LintFailed(SqlMigrateError):
    """squawk ran but gave no report: it failed, printed something else, or did not finish in time."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises ``KeyboardInterrupt``: psycopg then cancels the running
    query and the migration's transaction is rolled back the same way."""


class MigrationInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (``terminated``) stopped a migration; the message says what became of
    it. Still a ``KeyboardInterrupt``, so code around the runner stops as it would anyway."""

    def __init__(self, migration: Migration, message: str, terminated: bool) -> None:
        super().__init__(message)
        self.migration = migration
        self.terminated = terminated


def redo_stopped(error: BaseException, left: list[Migration]) -> BaseException:
    """The error that stopped a redo part way, its message followed by the migrations the redo
    rolled back and did not apply again (``left``, oldest first) and how to finish. It stays the
    error it was (a failure, an interrupt), so its exit code does too; an interrupt between two
    migrations becomes a :class:`MigrationInterrupted` to carry the message."""
    ids = ", ".join(migration.id for migration in left)
    note = (
        f"; redo left {plural(len(left), 'migration')} rolled back and not applied again: {ids} "
        f"(run sqlmigrate_up to apply {'it' if len(left) == 1 else 'them'})"
    )
    if isinstance(error, KeyboardInterrupt) and not isinstance(error, MigrationInterrupted):
        terminated = isinstance(error, Terminated)
        return MigrationInterrupted(
            left[0], f"redo interrupted ({'SIGTERM' if terminated else 'Ctrl-C'}){note}", terminated
        )
    error.args = (f"{error}{note}",)
    return error


# A database error in one line -------------------------------------------------------------------


def driver_error(connection: BaseDatabaseWrapper) -> type[Exception]:
    """The DB-API ``Error`` class of the connection's driver (psycopg, sqlite3): what a raw
    cursor raises."""
    error: type[Exception] = connection.Database.Error  # type: ignore[attr-defined]
    return error


def database_error_types(connection: BaseDatabaseWrapper) -> tuple[type[Exception], ...]:
    """What a query on ``connection`` raises when the database fails it: Django's errors (from
    its cursors) and the driver's own (from raw cursors)."""
    return (django.db.Error, driver_error(connection))


def _driver_error_of(error: BaseException) -> BaseException:
    """The driver's error under Django's wrapper of it (which has no SQLSTATE, DETAIL or HINT)."""
    cause = error.__cause__
    return cause if isinstance(error, django.db.Error) and cause is not None else error


def sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE of a database error (under Django's wrapper too); None where the driver
    gives none (sqlite3) or for anything else."""
    return getattr(_driver_error_of(error), "sqlstate", None) if error is not None else None


def database_message(error: BaseException) -> str:
    """The database's message in one line, with the DETAIL and HINT it gives."""
    error = _driver_error_of(error)
    diag = getattr(error, "diag", None)
    text = getattr(diag, "message_primary", None) or str(error).strip() or type(error).__name__
    extras = [
        f"{label.upper()}: {' '.join(extra.split())}"
        for label in ("detail", "hint")
        if (extra := getattr(diag, f"message_{label}", None))
    ]
    return text.splitlines()[0] + (f" ({'; '.join(extras)})" if extras else "")


@contextmanager
def database_errors(connection: BaseDatabaseWrapper, where: str | None = None) -> Iterator[None]:
    """A database error raised inside becomes a one-line :class:`DatabaseError` naming
    ``connection``'s alias (or ``where``); sqlmigrate's own errors pass through as they are."""
    try:
        yield
    except database_error_types(connection) as exc:
        raise DatabaseError(connection.alias, exc, where) from exc


def reports_database_errors(method: F) -> F:
    """A method of an object with a ``connection`` (the runner's public ones), run inside
    :func:`database_errors`."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with database_errors(self.connection):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]

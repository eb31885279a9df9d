"""The public API: plan, apply, roll back, status and validate, over one Django connection.

The runner returns plain data and reports progress through a :class:`Reporter`; only the
management commands print.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from time import perf_counter
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db import Error as DjangoDatabaseError

from . import conf
from .backends import StatementError, backend_for, driver_error
from .errors import SqlMigrateError, Terminated
from .files import Migration, Section, load_directory
from .history import AppliedMigration, HistoryError, HistoryTable
from .statements import Statement, may_change_session, transaction_control

APPLIED, PENDING, MODIFIED, MISSING = "applied", "pending", "modified", "missing"


class MigrationFailed(SqlMigrateError):
    """A migration's SQL failed; its transaction was rolled back (unless ``no-transaction``)."""

    def __init__(self, migration: Migration, message: str) -> None:
        super().__init__(message)
        self.migration = migration


class MigrationInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (``terminated``) stopped a migration; the message says what became of
    it. Still a ``KeyboardInterrupt``, so code around the runner stops as it would anyway."""

    def __init__(self, migration: Migration, message: str, terminated: bool) -> None:
        super().__init__(message)
        self.migration = migration
        self.terminated = terminated


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    id: str
    name: str
    state: str
    executed_at: datetime | None
    checksum: str
    stored_checksum: str | None
    migration: Migration | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "executed_at": self.executed_at.isoformat() if self.executed_at else None,
            "checksum": self.checksum,
            "stored_checksum": self.stored_checksum,
            "file": str(self.migration.path) if self.migration else None,
        }


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing ``validate`` found wrong; ``kind`` is one of :data:`PROBLEM_KINDS`."""

    kind: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


# Exit codes of ``sqlmigrate_status --check`` and ``sqlmigrate_validate``, one per kind of
# problem, so a pipeline can tell "deploy needs migrations" (3) from "history was tampered
# with" (5, 6). With several kinds the highest code wins. 1 stays "error" (bad arguments,
# database unreachable), 2 is argparse's usage error.
EXIT_CODES = {
    PENDING: 3,
    "out_of_order": 4,
    MODIFIED: 5,
    MISSING: 6,
    "bad_file": 7,
    "history_table": 8,
}
PROBLEM_KINDS = tuple(kind for kind in EXIT_CODES if kind != PENDING)


def exit_code(kinds: Iterable[str]) -> int:
    """The exit code for a set of problem kinds: 0 when there are none."""
    return max((EXIT_CODES[kind] for kind in kinds), default=0)


def status_problem_kinds(rows: list[MigrationStatus]) -> set[str]:
    """What keeps a database from being up to date: pending, out_of_order, modified, missing."""
    newest = max((row.id for row in rows if row.stored_checksum is not None), default=None)
    kinds = set()
    for row in rows:
        if row.state == PENDING:
            kinds.add("out_of_order" if newest and row.id < newest else PENDING)
        elif row.state != APPLIED:
            kinds.add(row.state)
    return kinds


@dataclass(frozen=True, slots=True)
class Result:
    migration: Migration
    action: str  # "applied", "faked", "rolled back" or "skipped"
    elapsed_ms: float


class Reporter:
    """Progress callbacks; the default ignores them."""

    def waiting(self, message: str) -> None:
        pass

    def starting(self, migration: Migration, action: str) -> None:
        pass

    def finished(self, result: Result) -> None:
        pass

    def failed(self, migration: Migration, elapsed_ms: float) -> None:
        pass

    def interrupted(self, migration: Migration, elapsed_ms: float) -> None:
        pass


class _AlreadyDone(Exception):
    """Another runner applied (or rolled back) this migration while we waited for it."""


F = TypeVar("F", bound=Callable[..., Any])

ROLLED_BACK = "rolled back, nothing of it was applied or recorded"
LOST_BEFORE_COMMIT = (
    "the connection was lost before its COMMIT was confirmed: run sqlmigrate_status to see whether it was recorded"
)


def describe(error: BaseException) -> str:
    """The database's message in one line, with the DETAIL and HINT it gives."""
    diag = getattr(error, "diag", None)
    text = getattr(diag, "message_primary", None) or str(error).strip() or type(error).__name__
    extras = [
        f"{label.upper()}: {' '.join(extra.split())}"
        for label in ("detail", "hint")
        if (extra := getattr(diag, f"message_{label}", None))
    ]
    return text.splitlines()[0] + (f" ({'; '.join(extras)})" if extras else "")


def _reports_database_errors(method: F) -> F:
    """Turn a database error that escapes a public method into a one-line SqlMigrateError."""

    @functools.wraps(method)
    def wrapper(self: MigrationRunner, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (DjangoDatabaseError, driver_error(self.connection)) as exc:
            raise SqlMigrateError(f"database {self.using!r}: {describe(exc)}") from exc

    return wrapper  # type: ignore[return-value]


def _open_group(ran: list[Statement]) -> int | None:
    """The index in ``ran`` of a ``BEGIN`` whose group had not ended, if any."""
    opened = None
    for index, statement in enumerate(ran):
        control = transaction_control(statement.sql)
        if control == "begin":
            opened = index
        elif control is not None:
            opened = None
    return opened


class MigrationRunner:
    def __init__(
        self,
        using: str = DEFAULT_DB_ALIAS,
        directory: str | Path | None = None,
        table: str | None = None,
        lock_wait_timeout: float | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.using = conf.check_alias(using)
        self.connection = connections[using]
        self.directory = Path(directory) if directory else conf.migrations_dir(using)
        self.history = HistoryTable(self.connection, table or conf.table_name())
        self.backend = backend_for(self.connection)
        self.lock_wait_timeout = lock_wait_timeout
        self.reporter = reporter or Reporter()
        self.timeouts = {"lock_timeout": conf.lock_timeout(), "statement_timeout": conf.statement_timeout()}
        self._session: Any = None  # the session's settings as the run found them, read when needed

    # Reading -------------------------------------------------------------------------------

    def load(self) -> list[Migration]:
        """Every migration file, parsed; the first bad file raises."""
        found = load_directory(self.directory)
        found.raise_first_error()
        return found.migrations

    @_reports_database_errors
    def status(self) -> list[MigrationStatus]:
        """Every migration known from files or history, in id order. Never writes."""
        return self._statuses(self.load(), self.history.read())

    def pending(self) -> list[Migration]:
        return [row.migration for row in self.status() if row.state == PENDING and row.migration]

    @_reports_database_errors
    def validate(self) -> list[Problem]:
        """Every problem with files and history; an empty list means all is well. Never writes."""
        found = load_directory(self.directory)
        problems = [Problem("bad_file", str(error)) for error in found.errors]
        try:
            applied = self.history.read()
        except HistoryError as exc:
            return [*problems, Problem("history_table", str(exc))]
        unreadable = {error.path.name[:-4] for error in found.errors}
        for row in self._statuses(found.migrations, applied):
            if row.state == MODIFIED and row.migration:
                problems.append(Problem(MODIFIED, self._modified_message(row.migration, row.stored_checksum)))
            elif row.state == MISSING and row.id not in unreadable:
                problems.append(Problem(MISSING, f"{self.directory / (row.id + '.sql')}: {self._missing(row.id)}"))
        problems += [
            Problem("out_of_order", self._out_of_order_message(m, applied))
            for m in self._late(found.migrations, applied)
        ]
        return problems

    def _statuses(self, migrations: list[Migration], applied: dict[str, AppliedMigration]) -> list[MigrationStatus]:
        files = {migration.id: migration for migration in migrations}
        rows = []
        for migration_id in sorted(files.keys() | applied.keys()):
            migration, record = files.get(migration_id), applied.get(migration_id)
            if migration and record:
                state = APPLIED if migration.checksum == record.checksum else MODIFIED
            else:
                state = PENDING if migration else MISSING
            rows.append(
                MigrationStatus(
                    id=migration_id,
                    name=migration.name if migration else record.name,  # type: ignore[union-attr]
                    state=state,
                    executed_at=record.executed_at if record else None,
                    checksum=migration.checksum if migration else record.checksum,  # type: ignore[union-attr]
                    stored_checksum=record.checksum if record else None,
                    migration=migration,
                )
            )
        return rows

    @staticmethod
    def _late(migrations: list[Migration], applied: dict[str, AppliedMigration]) -> list[Migration]:
        """Pending migrations older than the newest applied one (a branch merged late)."""
        newest = max(applied, default=None)
        return [m for m in migrations if newest and m.id not in applied and m.id < newest]

    def _missing(self, migration_id: str) -> str:
        return f"migration {migration_id} was applied but its file is missing from {self.directory}"

    @staticmethod
    def _modified_message(migration: Migration, stored: str | None) -> str:
        return (
            f"{migration.path}: changed since it was applied (checksum {migration.checksum[:12]}, "
            f"recorded {(stored or '')[:12]}); restore it and put the change in a new migration"
        )

    @staticmethod
    def _out_of_order_message(migration: Migration, applied: dict[str, AppliedMigration]) -> str:
        return (
            f"{migration.path}: pending migration is older than the newest applied one ({max(applied)}); "
            "rename it to a newer timestamp, or apply it with --allow-out-of-order"
        )

    def _check_applied(self, files: dict[str, Migration], applied: dict[str, AppliedMigration]) -> None:
        for migration_id, record in applied.items():
            migration = files.get(migration_id)
            if migration is None:
                raise SqlMigrateError(self._missing(migration_id))
            if migration.checksum != record.checksum:
                raise SqlMigrateError(self._modified_message(migration, record.checksum))

    # Applying ------------------------------------------------------------------------------

    def _locked(self) -> Any:
        """The run-wide lock; the history table is named with its schema and the session's
        settings are read afresh for the run."""

        def on_wait() -> None:
            self.reporter.waiting(
                f"Waiting for another sqlmigrate runner to release the lock on {self.history.table}..."
            )

        schema = self.backend.history_schema()
        self.history.pin(schema)
        self._session = None
        return self.backend.lock(schema, self.history.table, self.lock_wait_timeout, on_wait)

    @_reports_database_errors
    def plan(self, to: str | None = None, allow_out_of_order: bool = False) -> list[Migration]:
        """What :meth:`migrate` would apply, in order. Never writes."""
        migrations = self.load()
        return self._plan_up(migrations, self.history.read(), to, allow_out_of_order)

    @_reports_database_errors
    def migrate(self, to: str | None = None, fake: bool = False, allow_out_of_order: bool = False) -> list[Result]:
        """Apply every pending migration (up to and including ``to``), each in its own transaction."""
        migrations = self.load()
        with self._locked():
            applied = self.history.read(create=True)
            plan = self._plan_up(migrations, applied, to, allow_out_of_order)
            return [self._apply(migration, fake) for migration in plan]

    def _plan_up(
        self,
        migrations: list[Migration],
        applied: dict[str, AppliedMigration],
        to: str | None,
        allow_out_of_order: bool,
    ) -> list[Migration]:
        files = {migration.id: migration for migration in migrations}
        self._check_applied(files, applied)
        if to is not None and to not in files:
            raise SqlMigrateError(f"--to {to}: no such migration in {self.directory}")
        plan = [m for m in migrations if m.id not in applied and (to is None or m.id <= to)]
        late = self._late(plan, applied)
        if late and not allow_out_of_order:
            raise SqlMigrateError(self._out_of_order_message(late[0], applied))
        return plan

    def _timed(self, migration: Migration, action: str, work: Callable[[], None]) -> Result:
        self.reporter.starting(migration, action)
        started = perf_counter()
        try:
            work()
        except _AlreadyDone:
            action = "skipped"
        except KeyboardInterrupt:
            self.reporter.interrupted(migration, (perf_counter() - started) * 1000)
            raise
        except Exception:
            self.reporter.failed(migration, (perf_counter() - started) * 1000)
            raise
        result = Result(migration, action, (perf_counter() - started) * 1000)
        self.reporter.finished(result)
        return result

    def _apply(self, migration: Migration, fake: bool) -> Result:
        if fake:
            return self._timed(migration, "faked", lambda: self._in_transaction(migration, None))
        return self._timed(migration, "applied", lambda: self._run(migration, migration.up, up=True))

    def _run(self, migration: Migration, section: Section, up: bool) -> None:
        """Run one side of a migration with its history change, then put back the session
        settings it may have changed (``SET``, ``set_config``, ``PRAGMA``, the timeouts of a
        ``no-transaction`` run), so the next migration starts from the run's own."""
        run = self._in_transaction if migration.transactional else self._without_transaction
        if not (may_change_session(section.sql) or self._sets_session_timeouts(migration)):
            run(migration, section, up)
            return
        if self._session is None:
            self._session = self.backend.session_state()
        try:
            run(migration, section, up)
        except BaseException:
            with contextlib.suppress(DjangoDatabaseError, driver_error(self.connection)):
                self._restore_session()
            raise
        try:
            self._restore_session()
        except (DjangoDatabaseError, driver_error(self.connection)) as exc:
            raise SqlMigrateError(
                f"{migration.path}: {migration.id} was {'applied' if up else 'rolled back'}, but the session "
                f"settings it changed could not be put back: {describe(exc)}"
            ) from exc

    def _sets_session_timeouts(self, migration: Migration) -> bool:
        return not migration.transactional and bool(self.backend.timeout_statements(migration, self.timeouts, False))

    def _restore_session(self) -> None:
        if not self.backend.connection_lost():
            self.backend.restore_session(self._session)

    def _claim(self, migration: Migration) -> None:
        """Write the history row first: on SQLite this takes the write lock, so a concurrent
        runner waits here and then finds the migration already applied."""
        try:
            self.history.insert(migration.id, migration.name, migration.checksum)
        except IntegrityError:
            raise _AlreadyDone from None

    def _in_transaction(self, migration: Migration, section: Section | None, up: bool = True) -> None:
        """One migration in one transaction with its history row, or just the row for ``--fake``.

        Whatever fails, the transaction is rolled back and the error names the migration: a
        statement's error with its line; a lost connection or a failing COMMIT as such. When
        the server has gone, Django's own rollback fails too: the statement's error is kept.
        """
        failed: list[StatementError] = []
        try:
            with transaction.atomic(using=self.using):
                try:
                    self._transaction_body(migration, section, up)
                except StatementError as exc:
                    failed.append(exc)
                    raise
        except KeyboardInterrupt as exc:
            raise self._interrupted(migration, exc, self._outcome_of_interrupted(migration, up)) from exc
        except (StatementError, DjangoDatabaseError, driver_error(self.connection)) as exc:
            raise self._transaction_failure(migration, failed[0] if failed else exc) from exc

    def _transaction_body(self, migration: Migration, section: Section | None, up: bool) -> None:
        """The history row first (written on the way up, deleted on the way down), then the
        section: on PostgreSQL the BEGIN, timeouts, row and section make one round trip, with
        the COMMIT too on the way up when ours is the outermost atomic block."""
        if section is None:
            self._claim(migration)
            return
        cursor = self.backend.raw_cursor()
        timeouts = self.backend.timeout_statements(migration, self.timeouts, local=True)
        if up:
            row = self.history.insert_sql(migration.id, migration.name, migration.checksum)
            outermost = len(self.connection.atomic_blocks) == 1
            self.backend.run_section(cursor, section, [*timeouts, row], last=outermost)
            return
        # No COMMIT with it: when another runner deleted the row first, this rolls back.
        deleted = self.backend.run_section(cursor, section, [*timeouts, self.history.delete_sql(migration.id)])
        if deleted[-1] == 0:
            raise _AlreadyDone

    def _transaction_failure(self, migration: Migration, error: Exception) -> BaseException:
        """What to raise for a transactional migration that failed (it was rolled back)."""
        if not isinstance(error, StatementError):
            if self.backend.connection_lost(error):
                return self._failure(migration, error, None, LOST_BEFORE_COMMIT)
            return self._failure(migration, error, None, ROLLED_BACK)
        if not error.in_prelude:
            return self._failure(migration, error.error, error.line, ROLLED_BACK)
        if isinstance(error.error, self.connection.Database.IntegrityError):  # type: ignore[attr-defined]
            return _AlreadyDone()  # another runner's history row: see _claim
        return error.error

    def _without_transaction(self, migration: Migration, section: Section, up: bool = True) -> None:
        if self.connection.in_atomic_block:
            raise SqlMigrateError(f"{migration.path}: a no-transaction migration cannot run inside transaction.atomic")
        cursor = self.backend.raw_cursor()
        statements = self.backend.split(section)
        ran: list[Statement] = []
        try:
            self.backend.set_timeouts(cursor, migration, self.timeouts)
            self.backend.run_statements(cursor, statements, ran)
        except StatementError as exc:
            raise self._failure(migration, exc.error, exc.line, self._stopped(ran, statements)) from exc
        except KeyboardInterrupt as exc:
            raise self._interrupted(migration, exc, self._stopped(ran, statements)) from exc
        if up:
            self.history.insert(migration.id, migration.name, migration.checksum)
        else:
            self.history.delete(migration.id)

    def _stopped(self, ran: list[Statement], statements: list[Statement]) -> str:
        """What a ``no-transaction`` run stopped by an error or a signal leaves behind. A
        ``BEGIN ... COMMIT`` group it was in the middle of is rolled back (the session would stay
        in a failed transaction otherwise): its statements took no effect."""
        group = _open_group(ran)
        if group is not None and not self.backend.connection_lost() and self.backend.in_transaction():
            with contextlib.suppress(DjangoDatabaseError, driver_error(self.connection)):
                self.backend.raw_cursor().execute("ROLLBACK")
        kept = ran if group is None else ran[:group]
        if kept:
            lines = ", ".join(str(statement.line) for statement in kept)
            outcome = f"no-transaction: {len(kept)} of {len(statements)} statements had already run (lines {lines})"
        else:
            outcome = f"no-transaction: none of its {len(statements)} statements had run"
        if group is not None:
            outcome += f"; the group begun on line {ran[group].line} was rolled back"
        return outcome + "; it was not recorded"

    def _failure(self, migration: Migration, error: Exception, line: int | None, outcome: str) -> MigrationFailed:
        where = f"{migration.path}:{line}" if line else str(migration.path)
        message = describe(error)
        if self.backend.connection_lost(error):
            message = f"lost the connection to database {self.using!r} ({message})"
        return MigrationFailed(migration, f"{where}: {migration.id} failed: {message} [{outcome}]")

    def _interrupted(self, migration: Migration, signal: KeyboardInterrupt, outcome: str) -> MigrationInterrupted:
        terminated = isinstance(signal, Terminated)
        how = "SIGTERM" if terminated else "Ctrl-C"
        return MigrationInterrupted(
            migration, f"{migration.path}: {migration.id} interrupted ({how}) [{outcome}]", terminated
        )

    def _outcome_of_interrupted(self, migration: Migration, up: bool) -> str:
        """Whether an interrupted transactional migration had committed: its history row says."""
        try:
            recorded = self.history.contains(migration.id)
        except (DjangoDatabaseError, driver_error(self.connection)):
            return "the connection was lost: run sqlmigrate_status to see whether it was recorded"
        if up:
            return "it had already committed: applied and recorded" if recorded else ROLLED_BACK
        return "its DOWN was rolled back: it is still applied" if recorded else "its DOWN had already committed"

    # Rolling back --------------------------------------------------------------------------

    @_reports_database_errors
    def plan_rollback(self, steps: int | None = None, to: str | None = None) -> list[Migration]:
        """What :meth:`rollback` would undo, newest first. Never writes."""
        return self._plan_down(self.load(), self.history.read(), steps, to)

    @_reports_database_errors
    def rollback(self, steps: int | None = None, to: str | None = None) -> list[Result]:
        """Undo the last ``steps`` migrations (default 1), or every one newer than ``to``."""
        migrations = self.load()
        with self._locked():
            plan = self._plan_down(migrations, self.history.read(create=True), steps, to)
            return [self._revert(migration) for migration in plan]

    def _plan_down(
        self, migrations: list[Migration], applied: dict[str, AppliedMigration], steps: int | None, to: str | None
    ) -> list[Migration]:
        files = {migration.id: migration for migration in migrations}
        newest_first = sorted(applied, reverse=True)
        if to is not None:
            if steps is not None:
                raise SqlMigrateError("give either a number of migrations or --to, not both")
            if to not in files and to not in applied:
                raise SqlMigrateError(f"--to {to}: no such migration in {self.directory} or in the history")
            targets = [migration_id for migration_id in newest_first if migration_id > to]
        else:
            steps = 1 if steps is None else steps
            if steps < 1:
                raise SqlMigrateError(f"cannot roll back {steps} migrations: give a number of at least 1")
            if steps > len(newest_first):
                applied_count = {0: "none is", 1: "only 1 is"}.get(len(newest_first), f"only {len(newest_first)} are")
                plural = "s" if steps != 1 else ""
                raise SqlMigrateError(f"cannot roll back {steps} migration{plural}: {applied_count} applied")
            targets = newest_first[:steps]
        plan = []
        for migration_id in targets:
            migration = files.get(migration_id)
            if migration is None:
                raise SqlMigrateError(f"cannot roll back {migration_id}: {self._missing(migration_id)}")
            if migration.checksum != applied[migration_id].checksum:
                raise SqlMigrateError(
                    f"cannot roll back: {self._modified_message(migration, applied[migration_id].checksum)}"
                )
            if not migration.reversible:
                raise SqlMigrateError(
                    f"{migration.path}: cannot roll back {migration_id}: its -- DOWN section is empty"
                )
            plan.append(migration)
        return plan

    def _revert(self, migration: Migration) -> Result:
        return self._timed(migration, "rolled back", lambda: self._run(migration, migration.down, up=False))

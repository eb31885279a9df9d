"""The public API: status, validate, plan, apply and roll back, over one Django connection.

:class:`MigrationRunner` composes the pieces: the files (:mod:`.directory`), the history table
(:mod:`.history`), their states (:mod:`.state`), the plans (:mod:`.planner`), the execution
(:mod:`.executor`) and the database's backend (:mod:`.backends`). It returns plain data and
reports progress through a :class:`~.executor.Reporter`; only the management commands print.
With a ``schema``, it is one tenant's: the tenant set, run in that schema, with a history and a
lock of its own (:mod:`.fleet` runs many).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from . import conf
from .backends import HistoryRows, backend_for
from .directory import MigrationSet, load_directory, load_one
from .errors import (
    ConfigurationError,
    HistoryMoved,
    MigrationFailed,
    MigrationFileError,
    MissingMigration,
    SqlMigrateError,
    database_error_types,
    redo_stopped,
    reports_database_errors,
)
from .executor import Action, Executor, Reporter, Result, Side
from .files import Migration, Section
from .history import AppliedMigration, History, HistoryTable
from .planner import Repair, plan_down, plan_redo, plan_repair, plan_up
from .repeatables import Ordering, Unit, drop_sql, plan_repeatables
from .requirements import check_requirements, unknown_requirements
from .script import Script
from .state import MigrationStatus, Problem, State, StatusTable, problems, statuses
from .statements import check_statements, with_statements_checked

Step = TypeVar("Step")  # what _run_plan runs at a time

# PostgreSQL's refusal to change a column a view uses (its DETAIL names the view).
VIEW_IN_THE_WAY_RE = re.compile(r'used by a view or rule.*?rule _RETURN on (?:materialized )?view (?P<name>[\w."$]+)')


class MigrationRunner:
    """The SQL migrations of one database, or of one tenant schema in it: what they are, and
    running them."""

    def __init__(
        self,
        using: str = DEFAULT_DB_ALIAS,
        directory: str | Path | None = None,
        table: str | None = None,
        lock_wait_timeout: float | None = None,
        reporter: Reporter | None = None,
        retries: int | None = None,
        loader: Callable[[Path], MigrationSet] = load_directory,
        schema: str | None = None,
    ) -> None:
        self.using = conf.check_alias(using)
        self.connection = connections[using]
        self.backend = backend_for(self.connection)  # refuses a database sqlmigrate has no backend for
        self.schema = None if schema is None else self._tenant_schema(schema)
        self.directory = Path(directory) if directory else self._default_directory()
        self.history = HistoryTable(self.backend, table or conf.table_name())
        if self.schema is not None:
            self.history.pin_tenant(self.schema)
        self.lock_wait_timeout = lock_wait_timeout
        self.reporter = reporter or Reporter()
        self.loader = loader  # how the files are read: the admin page passes cache.load_cached
        retries = conf.retries() if retries is None else retries
        self.executor = Executor(
            self.backend, self.history, self.reporter, conf.timeouts(), retries, self.schema, conf.batch_bytes()
        )
        self._found = MigrationSet(self.directory)  # the last load's files (see _files)
        self._ordered: Ordering | None = None  # their repeatables' order, once asked for

    def _tenant_schema(self, schema: str) -> str:
        """``schema``, a tenant's, checked: a name sqlmigrate takes, on a database with schemas."""
        if not self.backend.has_schemas:
            raise self.backend.schemas_unsupported()
        return conf.check_schema_name(schema, "schema")

    def _default_directory(self) -> Path:
        """The shared set's directory, or a tenant's: ``SQLMIGRATE_TENANT_DIR``."""
        if self.schema is None:
            return conf.migrations_dir(self.using)
        directory = conf.tenant_dir(self.using)
        if directory is None:
            raise ConfigurationError(
                f"database {self.using!r} has no tenant set: set SQLMIGRATE_TENANT_DIR (or pass the directory)"
            )
        return directory

    # Reading ----------------------------------------------------------------------------------

    def load(self) -> list[Migration]:
        """Every migration file, parsed and its statements checked; the first bad file raises."""
        found = with_statements_checked(self.loader(self.directory))
        found.raise_first_error()
        return found.migrations

    def _files(self) -> MigrationSet:
        """Every file's sections and checksum; the first bad one raises. Statements are checked
        only in the migrations a run executes (:func:`~.statements.check_statements`), the
        repeatables' order (a cycle refused) made only when one is to run (:attr:`_ordering`)."""
        found = self.loader(self.directory)
        found.raise_first_error()
        self._found, self._ordered = found, None
        return found

    @property
    def _ordering(self) -> Ordering:
        """The order of the last load's repeatables, made when first asked for: a no-op ``up``
        with 200 unchanged ones spares reading what each creates and uses."""
        if self._ordered is None:
            self._ordered = Ordering(self._found.repeatables)
        return self._ordered

    @reports_database_errors
    def status(self) -> list[MigrationStatus]:
        """Every migration known from files or history, in id order. Never writes.

        A file whose only problem is a statement that cannot run (say ``CREATE INDEX
        CONCURRENTLY`` without ``no-transaction``) shows in its state: ``validate``, ``up`` and
        ``manage.py check`` report that statement."""
        return self.status_table().rows()

    @reports_database_errors
    def status_table(self) -> StatusTable:
        """:meth:`status`, its rows made only when asked for (see :class:`~.state.StatusTable`)."""
        return StatusTable(self._files(), self.history.read())

    @reports_database_errors
    def status_of(self, migration_id: str) -> MigrationStatus | None:
        """One migration's status from its own file and its one history row (None when neither
        is there), for a page about one migration among thousands. Never writes. Its file's
        timestamp is not compared with the others': :meth:`status` does that."""
        found = load_one(self.directory, migration_id)
        found.raise_first_error()
        record = self.history.read_one(migration_id)
        rows = statuses(found, History.of([record] if record else []))
        return rows[0] if rows else None

    def pending(self) -> list[Migration]:
        """The migrations not applied yet, in order. Never writes."""
        return [row.migration for row in self.status() if row.state == State.PENDING and row.migration]

    @reports_database_errors
    def validate(self) -> list[Problem]:
        """Every problem with files and history; an empty list means all is well. Never writes."""
        found = self.loader(self.directory)
        try:
            Ordering(found.repeatables)
        except MigrationFileError as exc:  # a cycle, a requires= naming no file
            found = MigrationSet(found.directory, found.migrations, [*found.errors, exc], found.repeatables)
        unknown = [Problem.of(error) for error in unknown_requirements([*found.migrations, *found.repeatables])]
        return problems(with_statements_checked(found), self.history.read) + unknown

    # Applying and rolling back ------------------------------------------------------------------

    @reports_database_errors
    def plan(self, to: str | None = None, allow_out_of_order: bool = False) -> list[Migration]:
        """What :meth:`migrate` would apply, in order (the repeatables last), or what it would
        refuse. Never writes."""
        found = self._files()
        self._pin_history()
        applied = self.history.read()
        plan = self._up_plan(found, applied, to, allow_out_of_order)
        return plan + [m for unit in self._repeatable_plan(applied, to) for m in unit.migrations]

    @reports_database_errors
    def migrate(self, to: str | None = None, fake: bool = False, allow_out_of_order: bool = False) -> list[Result]:
        """Apply every pending migration (up to and including ``to``), each in its own
        transaction; then, without ``to``, every repeatable migration new or changed since it
        last ran, each in its own transaction with the applied ones that depend on it."""
        found = self._files()
        with self._locked(read=True) as rows:
            applied = self._expected(self.history.applied(rows))
            plan = self._up_plan(found, applied, to, allow_out_of_order, fake)
            units = self._repeatable_plan(applied, to, fake)
            if rows is None:
                self.history.create_missing()
            run_many = _one_by_one(self.executor.fake) if fake else self.executor.apply_all
            current = applied  # the history as last read: a versioned migration with recreate-repeatables needs it

            def step(todo: list[Migration] | Migration | Unit) -> list[Result]:
                if isinstance(todo, Unit):
                    return [self.executor.fake(m) for m in todo.migrations] if fake else self._apply_unit(todo)
                if isinstance(todo, Migration):
                    return self._apply_recreating(todo, current.repeatables)
                return self._hinted(run_many, todo)

            def replan(now: History, done: list[Result]) -> list[Migration | Unit]:
                nonlocal current
                current = now
                return [*self._up_plan(found, now, to, allow_out_of_order, fake), *self._repeatable_plan(now, to, fake)]

            steps: list[Migration | Unit] = [*plan, *units]
            return self._run_plan(steps, _in_steps(step, fake), replan)

    def _read_history(self, create: bool = False) -> History:
        """The history, read under the run lock (see :meth:`_expected`)."""
        return self._expected(self.history.read(create=create))

    def _expected(self, applied: History) -> History:
        """``applied``, just read under the run lock: each migration's transaction will check
        that the history is still so, as the migrations before it leave it
        (:meth:`~.executor.Executor.expect`)."""
        self.executor.expect(applied)
        return applied

    def _run_plan(
        self,
        plan: list[Step],
        run: Callable[[list[Step]], list[Result]],
        replan: Callable[[History, list[Result]], list[Step]],
    ) -> list[Result]:
        """Run ``plan`` (``run`` sends runs of migrations in batches, and stops after a step
        that was skipped). When one was skipped (its transaction found the history other than
        the plan expected: another runner went first, which only a runner without a run-wide
        lock meets; in a batch, those before it committed and none after it ran), read the
        history again and go on with what ``replan`` makes of it and of the results so far,
        refused as a new run would refuse it (the versioned migrations and the repeatables
        alike)."""
        done = run(plan)
        results = list(done)
        while any(result.action == Action.SKIPPED for result in done):
            pending = replan(self._read_history(), results)
            if not pending:
                break
            done = run(pending)
            results += done
        return results

    def _repeatable_plan(self, applied: History, to: str | None, fake: bool = False) -> list[Unit]:
        """The repeatables ``up`` runs (none with ``to``: they may need migrations after it),
        checked as :meth:`_up_plan` checks the versioned ones."""
        rows, files = applied.repeatables, {migration.id: migration for migration in self._found.repeatables}
        for migration_id in rows:
            if migration_id not in files:
                raise MissingMigration(migration_id, self.directory)
        if to is not None or all(i in rows and rows[i].checksum == m.checksum for i, m in files.items()):
            return []
        units = plan_repeatables(self._ordering, rows)
        if units:
            units = self._with_catalog(applied)
        migrations = [migration for unit in units for migration in unit.migrations]
        check_statements(migrations)
        self._refuse_pooled_no_transaction(migrations)
        if not fake:
            check_requirements(self.connection, migrations, self.schema)
        return units

    def _with_catalog(self, applied: History) -> list[Unit]:
        """The repeatables to run once the catalog has said which managed views use what (one
        query, only when something is to run): a dependent whose file does not show it is
        re-created too."""
        catalog = self.backend.catalog_uses(self._ordering.keys())
        if catalog is not None:
            self._ordered = Ordering(self._found.repeatables, catalog)
        return plan_repeatables(self._ordering, applied.repeatables)

    def _apply_unit(self, unit: Unit) -> list[Result]:
        """One repeatable on its own as a versioned migration runs; with its dependents, the
        drops and all of them in one transaction."""
        if len(unit.migrations) == 1:
            return [self.executor.apply(unit.migrations[0])]
        return self.executor.apply_together(self._together(unit.dropped, unit.migrations))

    def _apply_recreating(self, migration: Migration, applied: dict[str, AppliedMigration]) -> list[Result]:
        """A versioned migration with ``recreate-repeatables``, in one transaction."""
        return self.executor.apply_together(self._recreating(migration, applied))

    def _recreating(self, migration: Migration, applied: dict[str, AppliedMigration]) -> list[Side]:
        """The sides of a versioned migration with ``recreate-repeatables``: the applied
        repeatables that use what it changes dropped (last first), it, and them run again."""
        used = [self._ordering.by_id[i] for i in self._ordering.used_by(migration, applied)]
        return self._together(tuple(reversed(used)), (migration, *used))

    def _together(self, dropped: Sequence[Migration], migrations: Sequence[Migration]) -> list[Side]:
        """The sides of one transaction: each of ``dropped`` dropped (one that has nothing to
        drop left out), then each of ``migrations`` applied and recorded."""
        drops = [self._drop_side(migration) for migration in dropped]
        return [side for side in drops if side.section.sql.strip()] + [self.executor.applying(m) for m in migrations]

    def _hinted(self, run: Callable[[list[Migration]], list[Result]], plan: list[Migration]) -> list[Result]:
        """``run(plan)``; when a migration fails because a view a repeatable creates uses a
        column it changes, the one line names the directive that would have let it through."""
        try:
            return run(plan)
        except MigrationFailed as exc:
            migration = exc.migration
            view = VIEW_IN_THE_WAY_RE.search(str(exc))
            owner = self._ordering.owner(view["name"]) if view else None
            if view is None or owner is None or migration.repeatable:
                raise
            hint = (
                f"; {owner.id}.sql creates {view['name']}: add '-- sqlmigrate: recreate-repeatables' to "
                f"{migration.id}.sql to drop it before the migration and create it again after, in its transaction"
            )
            raise MigrationFailed(migration, str(exc) + hint, exc.sqlstate, exc.lock_timed_out, exc.line) from exc

    def _drop_side(self, migration: Migration) -> Side:
        """What drops a dependent before the repeatable it depends on runs again."""
        sql, line = drop_sql(self._ordering, migration, self.backend.drop_statement)
        return Side(migration, Action.ROLLED_BACK, Section(sql, line), "")

    def _up_plan(
        self,
        found: MigrationSet,
        applied: dict[str, AppliedMigration],
        to: str | None,
        allow_out_of_order: bool,
        fake: bool = False,
    ) -> list[Migration]:
        """The migrations ``up`` applies, refused as ``up`` refuses them (the same for
        :meth:`migrate`, :meth:`plan` and :meth:`up_script`): the plan, every statement of it,
        and the Django migrations it requires (unless faked: nothing runs)."""
        plan = plan_up(found, applied, to, allow_out_of_order)
        check_statements(plan)  # before anything is written, even the history table
        self._refuse_pooled_no_transaction(plan)
        if not fake:
            check_requirements(self.connection, plan, self.schema)
        return plan

    @reports_database_errors
    def plan_rollback(
        self, steps: int | None = None, to: str | None = None, everything: bool = False
    ) -> list[Migration]:
        """What :meth:`rollback` would undo, newest first. Never writes."""
        found = self._files()
        self._pin_history()
        return self._down_plan(found, self.history.read(), steps, to, everything)

    @reports_database_errors
    def rollback(self, steps: int | None = None, to: str | None = None, everything: bool = False) -> list[Result]:
        """Undo the last ``steps`` migrations (default 1), every one newer than ``to``, or all."""
        found = self._files()
        with self._locked():
            plan = self._down_plan(found, self._read_history(create=True), steps, to, everything)

            def replan(applied: dict[str, AppliedMigration], results: list[Result]) -> list[Migration]:
                if to is not None or everything:
                    return self._down_plan(found, applied, None, to, everything)
                left = min((steps or 1) - len(results), len(applied))  # one another runner rolled back counts
                return self._down_plan(found, applied, left, None, False) if left > 0 else []

            return self._run_plan(plan, self.executor.revert_all, replan)

    def _down_plan(
        self,
        found: MigrationSet,
        applied: dict[str, AppliedMigration],
        steps: int | None,
        to: str | None,
        everything: bool,
    ) -> list[Migration]:
        """The migrations ``down`` rolls back, refused as ``down`` refuses them."""
        plan = plan_down(found, applied, steps, to, everything)
        check_statements(plan)
        self._refuse_pooled_no_transaction(plan)
        return plan

    def _refuse_pooled_no_transaction(self, plan: list[Migration]) -> None:
        """A ``no-transaction`` migration is refused on a transaction-pooled alias, before
        anything runs: each of its statements could run on another server session, without the
        run lock and with its session settings left there."""
        if not self.backend.transaction_pooled:
            return
        for migration in plan:
            if not migration.transactional:
                raise ConfigurationError(
                    f"{migration.path}: {migration.id} is a no-transaction migration, and database {self.using!r} "
                    "is transaction-pooled (DISABLE_SERVER_SIDE_CURSORS): its statements could each run on another "
                    "server session, without the run lock; apply it through a direct alias (--database)"
                )

    @reports_database_errors
    def redo(self, steps: int | None = None) -> list[Result]:
        """Roll back the last ``steps`` migrations (default 1) and apply them again, under one
        lock: the edit-run-edit loop of writing a migration (an edited file is accepted)."""
        found = self._files()
        with self._locked():
            plan = plan_redo(found, self._read_history(create=True), steps)
            check_statements(plan)
            self._refuse_pooled_no_transaction(plan)
            results: list[Result] = []
            try:
                for step, migration in [(self.executor.revert, m) for m in plan] + [
                    (self.executor.apply, m) for m in reversed(plan)
                ]:
                    results.append(step(migration))
                    if results[-1].action == Action.SKIPPED:
                        raise HistoryMoved(
                            f"{migration.path}: the history changed while redo ran (another runner): "
                            "run sqlmigrate_status, then redo again"
                        )
            except (SqlMigrateError, KeyboardInterrupt) as exc:
                left = self._left_rolled_back(plan, len(results))
                stopped = redo_stopped(exc, left) if left else exc
                if stopped is exc:
                    raise
                raise stopped from exc
            return results

    def _left_rolled_back(self, plan: list[Migration], done: int) -> list[Migration]:
        """The migrations of a redo's ``plan`` it leaves rolled back after ``done`` steps, oldest
        first: those the history holds no row for; when it cannot be read (the connection was
        lost), those rolled back and not applied again (the one that failed among them)."""
        try:
            applied = self.history.read()
        except database_error_types(self.connection):
            reapplied = max(done - len(plan), 0)  # the reverts come first, newest first
            return list(reversed(plan[:done]))[reapplied:]
        return [migration for migration in reversed(plan) if migration.id not in applied]

    @reports_database_errors
    def create_schema(self) -> None:
        """Create the tenant's schema if it is missing, under the run lock (a new tenant: see
        :func:`~.fleet.migrate_tenant`). Nothing else ever creates one."""
        if self.schema is None:
            raise ConfigurationError("create_schema() is for a tenant's runner: MigrationRunner(schema=...)")
        with self._locked():
            self.backend.create_schema(self.schema)

    # One migration at a time ---------------------------------------------------------------------
    # For a tool that knows what comes next and has the database to itself (verify's throwaway
    # database): no plan is made (each would read the history) and the run lock is not taken.

    @reports_database_errors
    def create_history(self) -> None:
        """Create the history table if it is missing, under the run lock, as the first
        :meth:`migrate` does."""
        with self._locked():
            self.history.create()

    @reports_database_errors
    def apply_one(self, migration: Migration) -> Result:
        """Apply ``migration`` and record it, after the checks :meth:`migrate` makes of it (its
        statements, the Django migrations it requires); a ``Result`` as :meth:`migrate`'s. A
        repeatable one runs as ``up`` runs it when it changed: with the applied ones that depend
        on it dropped before and run again after, in its transaction."""
        check_statements([migration])
        check_requirements(self.connection, [migration], self.schema)
        if not migration.repeatable:
            return self.executor.apply(migration)
        if migration.id not in {m.id for m in self._found.repeatables}:
            self._files()
        applied = self.history.read().repeatables
        dependents = [self._ordering.by_id[i] for i in self._ordering.dependents(migration.id) if i in applied]
        return self._apply_unit(Unit((migration, *dependents), tuple(reversed(dependents))))[0]

    @reports_database_errors
    def revert_one(self, migration: Migration) -> Result:
        """Roll back ``migration`` (run its DOWN section) and remove its history row."""
        return self.executor.revert(migration)

    @reports_database_errors
    def is_applied(self, migration_id: str) -> bool:
        """Whether the history holds ``migration_id``'s row (after a step that failed: was it
        rolled back?). One lookup; never writes."""
        return self.history.contains(migration_id)

    def reset_session(self) -> None:
        """Leave nothing of this connection's session to what runs next, as if a new command
        connected (:meth:`~.backends.Backend.reset_session`): ``up`` and ``down`` are separate
        commands, so verify calls this after each step."""
        self.backend.reset_session()
        self.executor.start_run()  # the session settings to put back are the new session's

    # Repairing the history ---------------------------------------------------------------------

    @reports_database_errors
    def plan_repair(self, ids: Sequence[str] = ()) -> list[Repair]:
        """The history rows :meth:`repair` would change. Never writes."""
        return plan_repair(self._files(), self.history.read(), ids)

    @reports_database_errors
    def repair(self, ids: Sequence[str] = (), expected: list[Repair] | None = None) -> list[Repair]:
        """Make the history agree with the files, in one transaction under the run-wide lock: a
        modified migration gets its file's checksum, a missing one loses its row. Never touches
        the schema. With ``expected`` (the plan a user confirmed), a history that changed since
        is refused rather than repaired differently."""
        found = self._files()
        with self._locked():
            plan = plan_repair(found, self.history.read(), ids)
            if expected is not None and plan != expected:
                raise SqlMigrateError(
                    "the history changed since the repair plan was shown: run sqlmigrate_repair again"
                )
            with transaction.atomic(using=self.using):
                self._transaction_lock()
                for repair in plan:
                    if repair.checksum is None:
                        self.history.delete(repair.migration_id)
                    else:
                        self.history.update_checksum(repair.migration_id, repair.checksum)
        return plan

    def _transaction_lock(self) -> None:
        """Take the run lock for the current transaction, where the run holds none of its own
        (a transaction-pooled alias: :meth:`~.backends.Backend.transaction_lock`)."""
        try:
            for sql in self.backend.transaction_lock():
                self.backend.raw_cursor().execute(sql)
        except database_error_types(self.connection) as exc:
            raise (self.backend.claim_error(exc) or exc) from None

    # The script a DBA could run ----------------------------------------------------------------

    @reports_database_errors
    def up_script(self, to: str | None = None, allow_out_of_order: bool = False) -> str:
        """The SQL :meth:`migrate` would run, as a script to run by hand, or what it would
        refuse. Never writes."""
        found = self._files()
        self._pin_history()
        applied = self.history.read()
        plan = self._up_plan(found, applied, to, allow_out_of_order)
        steps: list[Migration | list[Side]] = [
            self._recreating(m, applied.repeatables) if m.recreate_repeatables else m for m in plan
        ]
        for unit in self._repeatable_plan(applied, to):
            steps.append(
                unit.migrations[0] if len(unit.migrations) == 1 else self._together(unit.dropped, unit.migrations)
            )
        return self._script().up(steps, create_history=not self.history.exists())

    @reports_database_errors
    def down_script(self, steps: int | None = None, to: str | None = None, everything: bool = False) -> str:
        """The SQL :meth:`rollback` would run, as a script to run by hand. Never writes."""
        found = self._files()
        self._pin_history()
        plan = plan_down(found, self.history.read(), steps, to, everything)
        check_statements(plan)
        return self._script().down(plan)

    def _script(self) -> Script:
        return Script(self.backend, self.history, self.executor.timeouts, self.using, self.schema)

    def _pin_history(self, locking: bool = False) -> str | None:
        """Name the history table with the schema current now, as a run does (so a script's
        migration that sets ``search_path`` cannot move a later history row); that schema. A
        tenant's history is pinned to its schema from the start. ``locking``: the run lock is
        taken next (the backend may begin it with the question)."""
        if self.schema is not None:
            return self.schema
        schema = self.backend.history_schema(locking)
        try:
            self.history.pin(schema)
        except BaseException:
            if locking:
                self.backend.lock_abandoned()
            raise
        return schema

    def _locked(self, read: bool = False) -> AbstractContextManager[HistoryRows | None]:
        """The run-wide lock (with ``read``, the history read with it: see
        :meth:`~.backends.Backend.lock`). The history table is named with the schema current
        now, and the session's settings will be read afresh for this run."""

        def on_wait() -> None:
            self.reporter.waiting(
                f"Waiting for another sqlmigrate runner to release the lock on {self.history.table}..."
            )

        schema = self._pin_history(locking=True)
        self.executor.start_run()
        history = self.history.name if read else None
        return self.backend.lock(schema, self.history.table, self.lock_wait_timeout, on_wait, history)


def _one_by_one(run: Callable[[Migration], Result]) -> Callable[[list[Migration]], list[Result]]:
    """``run`` for each migration of a plan, up to the first one skipped (see
    :meth:`MigrationRunner._run_plan`)."""

    def each(plan: list[Migration]) -> list[Result]:
        results: list[Result] = []
        for migration in plan:
            results.append(run(migration))
            if results[-1].action == Action.SKIPPED:
                break
        return results

    return each


def _in_steps(
    step: Callable[[list[Migration] | Migration | Unit], list[Result]], fake: bool
) -> Callable[[list[Migration | Unit]], list[Result]]:
    """``step`` for each step of an ``up`` plan, up to the first one skipped (see
    :meth:`MigrationRunner._run_plan`): each run of consecutive versioned migrations as one
    step (sent in batches), each ``recreate-repeatables`` migration (unless ``fake``) and each
    repeatable unit alone, in one transaction of its own (they break a batch)."""

    def each(plan: list[Migration | Unit]) -> list[Result]:
        results: list[Result] = []
        for one in _steps(plan, fake):
            done = step(one)
            results += done
            if any(result.action == Action.SKIPPED for result in done):
                break
        return results

    return each


def _steps(plan: list[Migration | Unit], fake: bool) -> list[list[Migration] | Migration | Unit]:
    """``plan`` in steps: runs of consecutive versioned migrations together, each
    ``recreate-repeatables`` migration (unless ``fake``) and each repeatable unit alone."""
    steps: list[list[Migration] | Migration | Unit] = []
    for todo in plan:
        if isinstance(todo, Unit) or (todo.recreate_repeatables and not fake):
            steps.append(todo)
        elif steps and isinstance(steps[-1], list):
            steps[-1].append(todo)
        else:
            steps.append([todo])
    return steps

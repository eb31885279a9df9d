"""Running one command over many histories: every tenant schema and every database, in parallel.

:func:`run_fleet` takes the :class:`~.tenants.Target`\\ s a command selected and an
:class:`Operation` (:class:`Up`, :class:`Down`, :class:`Redo`, :class:`RepairHistory`) and runs
it on each, as ``migrate_schemas`` does: each database's shared set first, then its tenants. It
reads every file before touching a database, then each database's tenants' histories in a few
queries (:func:`~.tenants.read_histories`): a tenant with nothing to do gets no connection, no
lock, no query of its own. The others run on ``jobs`` threads, each with its own Django
connection (Django's connections are per thread), never more than the server has to spare; each
tenant under its own lock, each migration as a single-database run sends it. The first failure
stops new tenants from starting (``keep_going`` runs them all); Ctrl-C or SIGTERM cancels the
running statements, whose migrations are rolled back, and raises :class:`FleetInterrupted`.

Every tenant's outcome is a :class:`TargetResult`; progress goes to a :class:`FleetReporter`,
called on the thread that runs the fleet, never a worker's. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from time import perf_counter
from typing import Any, ClassVar

from django.db import DEFAULT_DB_ALIAS, connections

from . import conf
from .backends import Backend, backend_for
from .directory import MigrationSet, load_directory
from .errors import SqlMigrateError, Terminated, database_errors
from .executor import Action, Reporter, Result
from .files import Migration
from .history import repeatable_rows
from .planner import Repair, plan_down, plan_redo, plan_repair, plan_up
from .repeatables import Ordering, plan_repeatables
from .runner import MigrationRunner
from .tenants import Target, TenantHistory, read_histories, refuse_shared_schema

# Tenants migrated at once in a database unless --jobs says otherwise (and never more than the
# server has connections to spare, nor more than there are tenants to migrate).
DEFAULT_JOBS = 4


class Outcome(str, Enum):
    """What a fleet run did with one history."""

    UP_TO_DATE = "up to date"  # up: nothing pending
    UNCHANGED = "unchanged"  # down, redo, repair: nothing to do
    APPLIED = "applied"
    FAKED = "faked"
    ROLLED_BACK = "rolled back"
    REDONE = "redone"
    REPAIRED = "repaired"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: its running migration was rolled back
    NOT_STARTED = "not started"  # a failure (without keep_going), an interrupt, or its shared set failed

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TargetResult:
    """What became of one history: its outcome, what was done to it (each migration's
    :class:`~.executor.Result`, or the repaired rows; on a failure, those done before it), and
    the error that stopped it."""

    target: Target
    outcome: Outcome
    results: tuple[Result, ...] = ()
    repairs: tuple[Repair, ...] = ()
    error: SqlMigrateError | None = None
    elapsed_ms: float = 0.0

    @property
    def failed(self) -> bool:
        """Whether it failed (an interrupted or not started one did not)."""
        return self.outcome == Outcome.FAILED

    def ids(self, *actions: Action) -> list[str]:
        """The migrations done to it with one of ``actions``, in order."""
        return [result.migration.id for result in self.results if result.action in actions]

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` object of one history in a fleet run."""
        found = {
            "database": self.target.database,
            "tenant": self.target.schema,
            "outcome": self.outcome.value,
            "applied": self.ids(Action.APPLIED, Action.FAKED),
            "rolled_back": self.ids(Action.ROLLED_BACK),
            "error": self.error.as_dict() if self.error else None,
        }
        if self.repairs:
            found["repaired"] = [repair.migration_id for repair in self.repairs]
        return found


class FleetInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (``terminated``) stopped a fleet run: the statements running were
    cancelled and their migrations rolled back; ``results`` says what became of every history."""

    def __init__(self, results: list[TargetResult], terminated: bool) -> None:
        done = sum(1 for result in results if result.outcome not in (Outcome.INTERRUPTED, Outcome.NOT_STARTED))
        stopped = sum(1 for result in results if result.outcome == Outcome.INTERRUPTED)
        super().__init__(
            f"interrupted ({'SIGTERM' if terminated else 'Ctrl-C'}): {done} of {len(results)} done, "
            f"{stopped} stopped and rolled back, the others not started; run the command again to finish"
        )
        self.results = results
        self.terminated = terminated


class FleetReporter:
    """Progress callbacks of a fleet run, all on the thread that called :func:`run_fleet`; the
    default ignores them."""

    def planned(self, targets: Sequence[Target]) -> None:
        """The run is about to start on these histories."""

    def started(self, target: Target) -> None:
        """A history is being migrated (it has a connection and a lock)."""

    def migration(self, target: Target, result: Result) -> None:
        """A migration of ``target`` is done (or was skipped)."""

    def waiting(self, target: Target, message: str) -> None:
        """Another runner holds ``target``'s lock; this one waits."""

    def finished(self, result: TargetResult) -> None:
        """A history is done, failed, or will not start."""


# What a fleet run does to each history -----------------------------------------------------------


class Operation(ABC):
    """What a fleet run does to each history: the plan a tenant's history calls for (a pure
    function of its files and rows, raising what the runner would refuse), and the run."""

    idle: ClassVar[Outcome] = Outcome.UNCHANGED
    # Whether each database's shared set goes first, as up's does (its tenants may use what it
    # makes); down undoes the tenants first.
    shared_first: ClassVar[bool] = True

    @property
    @abstractmethod
    def done(self) -> Outcome:
        """The outcome of a history it changed."""

    @abstractmethod
    def plan(self, target: Target, found: MigrationSet, history: TenantHistory) -> Sequence[Migration | Repair]:
        """What it would do to a tenant whose history is ``history``; empty: nothing."""

    @abstractmethod
    def run(self, runner: MigrationRunner, target: Target) -> Sequence[Result | Repair]:
        """Do it, under the history's lock (the runner's)."""

    def preview(self, runner: MigrationRunner) -> Sequence[Migration | Repair]:
        """What it would do to the runner's history, asking the database (``--plan``; a shared set)."""
        raise SqlMigrateError(f"{type(self).__name__.lower()} has no plan to show")


@dataclass(frozen=True)
class Up(Operation):
    """``sqlmigrate_up``: :meth:`~.runner.MigrationRunner.migrate`."""

    to: str | None = None
    fake: bool = False
    allow_out_of_order: bool = False
    idle: ClassVar[Outcome] = Outcome.UP_TO_DATE

    @property
    def done(self) -> Outcome:
        return Outcome.FAKED if self.fake else Outcome.APPLIED

    def plan(self, target: Target, found: MigrationSet, history: TenantHistory) -> list[Migration]:
        if history.matches:
            return []
        plan = plan_up(found, history.applied, self.to, self.allow_out_of_order)
        if self.to is not None:
            return plan
        units = plan_repeatables(Ordering(found.repeatables), repeatable_rows(history.applied))
        return plan + [migration for unit in units for migration in unit.migrations]

    def run(self, runner: MigrationRunner, target: Target) -> list[Result]:
        return runner.migrate(self.to, self.fake, self.allow_out_of_order)

    def preview(self, runner: MigrationRunner) -> list[Migration]:
        return runner.plan(self.to, self.allow_out_of_order)


@dataclass(frozen=True)
class Down(Operation):
    """``sqlmigrate_down``: :meth:`~.runner.MigrationRunner.rollback`."""

    steps: int | None = None
    to: str | None = None
    everything: bool = False
    shared_first: ClassVar[bool] = False

    @property
    def done(self) -> Outcome:
        return Outcome.ROLLED_BACK

    def plan(self, target: Target, found: MigrationSet, history: TenantHistory) -> list[Migration]:
        """Nothing applied: nothing to roll back (in a fleet, a new tenant is no error)."""
        return plan_down(found, history.applied, self.steps, self.to, self.everything) if history.applied else []

    def run(self, runner: MigrationRunner, target: Target) -> list[Result]:
        return runner.rollback(self.steps, self.to, self.everything)

    def preview(self, runner: MigrationRunner) -> list[Migration]:
        return runner.plan_rollback(self.steps, self.to, self.everything)


@dataclass(frozen=True)
class Redo(Operation):
    """``sqlmigrate_redo``: :meth:`~.runner.MigrationRunner.redo`."""

    steps: int | None = None

    @property
    def done(self) -> Outcome:
        return Outcome.REDONE

    def plan(self, target: Target, found: MigrationSet, history: TenantHistory) -> list[Migration]:
        return plan_redo(found, history.applied, self.steps) if history.applied else []

    def run(self, runner: MigrationRunner, target: Target) -> list[Result]:
        return runner.redo(self.steps)


@dataclass(frozen=True)
class RepairHistory(Operation):
    """``sqlmigrate_repair``: :meth:`~.runner.MigrationRunner.repair`, each history refused if
    it changed since its plan in ``expected`` was shown."""

    ids: tuple[str, ...] = ()
    expected: dict[Target, list[Repair]] = field(default_factory=dict)

    @property
    def done(self) -> Outcome:
        return Outcome.REPAIRED

    def plan(self, target: Target, found: MigrationSet, history: TenantHistory) -> list[Repair]:
        return [] if history.matches else plan_repair(found, history.applied, self.ids)

    def run(self, runner: MigrationRunner, target: Target) -> list[Repair]:
        return runner.repair(self.ids, expected=self.expected.get(target))

    def preview(self, runner: MigrationRunner) -> list[Repair]:
        return runner.plan_repair(self.ids)


# The run -----------------------------------------------------------------------------------------


def run_fleet(
    targets: Sequence[Target],
    operation: Operation,
    *,
    jobs: int | None = None,
    keep_going: bool = False,
    reporter: FleetReporter | None = None,
    directory: str | Path | None = None,
    lock_wait_timeout: float | None = None,
    retries: int | None = None,
) -> list[TargetResult]:
    """Do ``operation`` to each of ``targets`` (see the module's docstring), and say what became
    of each, in the order given. ``jobs``: tenants migrated at once in each database (default
    :data:`DEFAULT_JOBS`), capped by the connections its server has to spare; ``directory``: the
    shared sets' (``--dir``); ``lock_wait_timeout`` and ``retries`` as a runner's. A file that
    cannot be read raises before any database is touched."""
    if jobs is not None and jobs < 1:
        raise SqlMigrateError(f"--jobs {jobs}: give a number of at least 1")
    fleet = _Fleet(operation, jobs or DEFAULT_JOBS, keep_going, reporter or FleetReporter())
    fleet.runner_options = {"lock_wait_timeout": lock_wait_timeout, "retries": retries}
    fleet.shared_directory = Path(directory) if directory else None
    return fleet.run(list(targets))


def migrate_tenant(
    schema: str, using: str = DEFAULT_DB_ALIAS, reporter: Reporter | None = None, directory: str | Path | None = None
) -> list[Result]:
    """Bring a new tenant up to date: create its schema if it is missing, then apply the tenant
    set (``SQLMIGRATE_TENANT_DIR``, or ``directory``) in it, on the calling thread's connection,
    under the tenant's lock, as ``sqlmigrate_up --tenant SCHEMA`` does. For a tenant-creation
    hook (django-tenants' ``post_schema_sync``); raises what ``up`` would, and refuses the schema
    of the shared set's history as ``--tenant`` does (the public tenant's)."""
    runner = MigrationRunner(using, directory, reporter=reporter, schema=schema)
    with database_errors(runner.connection):
        refuse_shared_schema(using, runner.backend.history_schema(), [schema])
    runner.create_schema()
    return runner.migrate()


@dataclass(frozen=True)
class TargetPlan:
    """What an operation would do to one history (``--plan``, and ``repair``'s plan shown before
    it asks), or the error that refuses it."""

    target: Target
    planned: tuple[Migration | Repair, ...] = ()
    error: SqlMigrateError | None = None


def plan_fleet(
    targets: Sequence[Target], operation: Operation, directory: str | Path | None = None
) -> list[TargetPlan]:
    """What ``operation`` would do to each of ``targets``, in order, on the calling thread's
    connections: a shared set's runner asks its database, a database's tenants are planned
    from one read of their histories. Never writes."""
    plans: dict[Target, TargetPlan] = {}
    for target in targets:
        if target.schema is None:
            try:
                plans[target] = TargetPlan(
                    target, tuple(operation.preview(MigrationRunner(target.database, directory)))
                )
            except SqlMigrateError as exc:
                plans[target] = TargetPlan(target, error=exc)
    for database in dict.fromkeys(target.database for target in targets):
        tenants = [target for target in targets if target.database == database and target.schema is not None]
        if tenants:
            found = load_directory(_tenant_dir(database))
            found.raise_first_error()
            plans |= {plan.target: plan for plan in _tenant_plans(database, tenants, operation, found)}
    return [plans[target] for target in targets]


def _tenant_dir(database: str) -> Path:
    """The directory of ``database``'s tenant set, which a tenant target needs."""
    directory = conf.tenant_dir(database)
    if directory is None:
        raise SqlMigrateError(f"database {database!r} has no tenant set: set SQLMIGRATE_TENANT_DIR")
    return directory


def _tenant_plans(database: str, tenants: list[Target], operation: Operation, found: MigrationSet) -> list[TargetPlan]:
    """The plans of a database's tenants (files ``found``), from one read of their histories."""
    histories = read_histories(database, [target.schema or "" for target in tenants], found)
    plans = []
    for target in tenants:
        history = histories[target.schema or ""]
        try:
            if history.error is not None:
                raise history.error
            plans.append(TargetPlan(target, tuple(operation.plan(target, found, history))))
        except SqlMigrateError as exc:
            plans.append(TargetPlan(target, error=exc))
    return plans


class _Stopped(KeyboardInterrupt):
    """The fleet was interrupted: a worker stops before its next migration."""


class _Forward(Reporter):
    """A worker's runner's reporter: hands each event to the fleet's thread, keeps each result,
    and stops the run before its next migration once the fleet is interrupted."""

    def __init__(self, fleet: _Fleet, target: Target, events: queue.SimpleQueue[Any], done: list[Result]) -> None:
        self.fleet, self.target, self.events, self.done = fleet, target, events, done

    def starting(self, migration: Migration, action: Action) -> None:
        if self.fleet.interrupt is not None:
            raise _Stopped

    def finished(self, result: Result) -> None:
        self.done.append(result)
        self.events.put(lambda: self.fleet.reporter.migration(self.target, result))

    def waiting(self, message: str) -> None:
        self.events.put(lambda: self.fleet.reporter.waiting(self.target, message))


class _Fleet:
    """One fleet run: its results so far, its workers' backends (to cancel), and why it stops."""

    def __init__(self, operation: Operation, jobs: int, keep_going: bool, reporter: FleetReporter) -> None:
        self.operation, self.jobs, self.keep_going, self.reporter = operation, jobs, keep_going, reporter
        self.runner_options: dict[str, Any] = {}
        self.shared_directory: Path | None = None
        self.files: dict[Path, MigrationSet] = {}
        self.results: dict[Target, TargetResult] = {}
        self.stop = threading.Event()  # start no more targets
        self.interrupt: KeyboardInterrupt | None = None  # and stop the running ones
        self.crash: BaseException | None = None
        self.running: dict[int, Backend] = {}
        self.lock = threading.Lock()

    def run(self, targets: list[Target]) -> list[TargetResult]:
        """The shared sets (databases in parallel) and each database's tenants in turn, in the
        operation's order."""
        self.reporter.planned(targets)
        for target in targets:
            self._load(self.directory(target))
        shared = [target for target in targets if target.schema is None]
        if self.operation.shared_first:
            self._pool(shared)
        for database in dict.fromkeys(target.database for target in targets):
            tenants = [target for target in targets if target.database == database and target.schema is not None]
            if tenants and not self.stop.is_set() and self._shared_went_well(database):
                try:
                    self._pool(self._to_run(database, tenants), self._spare(database))
                except KeyboardInterrupt as exc:
                    self._interrupted(exc)
        if not self.operation.shared_first:
            self._pool(shared)
        if self.crash is not None:
            raise self.crash
        for target in targets:
            if target not in self.results:
                self._finish(TargetResult(target, Outcome.NOT_STARTED))
        results = [self.results[target] for target in targets]
        if self.interrupt is not None:
            raise FleetInterrupted(results, isinstance(self.interrupt, Terminated))
        return results

    def directory(self, target: Target) -> Path:
        """The directory of ``target``'s set: the shared set's, or the tenant set's."""
        if target.schema is None:
            return self.shared_directory or conf.migrations_dir(target.database)
        return _tenant_dir(target.database)

    def _load(self, directory: Path) -> MigrationSet:
        """A directory's files, read once for the whole fleet; the first bad file raises."""
        if directory not in self.files:
            found = load_directory(directory)
            found.raise_first_error()
            self.files[directory] = found
        return self.files[directory]

    def _shared_went_well(self, database: str) -> bool:
        """Whether ``database``'s tenants may start: its shared set goes after them, was not
        selected, or is done."""
        shared = self.results.get(Target(database))
        return shared is None or shared.outcome not in (Outcome.FAILED, Outcome.INTERRUPTED, Outcome.NOT_STARTED)

    def _to_run(self, database: str, tenants: list[Target]) -> list[Target]:
        """The tenants with something to do, planned from one read of all their histories; each
        of the others is finished at once: nothing to do, or refused as its runner would."""
        found = self.files[self.directory(tenants[0])]
        todo = []
        for plan in _tenant_plans(database, tenants, self.operation, found):
            if plan.error is not None:
                self._finish(TargetResult(plan.target, Outcome.FAILED, error=plan.error))
            elif plan.planned:
                todo.append(plan.target)
            else:
                self._finish(TargetResult(plan.target, self.operation.idle))
        return todo

    def _spare(self, database: str) -> int | None:
        """How many connections the server of ``database`` has to spare for the workers, this
        thread's own closed first (its slot is theirs; not inside a transaction)."""
        connection = connections[database]
        with database_errors(connection):
            spare = backend_for(connection).spare_connections()
        if spare is not None and not connection.in_atomic_block:
            connection.close()
            spare += 1
        return spare

    def _pool(self, targets: list[Target], spare: int | None = None) -> None:
        """Run ``targets`` on worker threads, and hand their events to the reporter here until
        every worker is done. Ctrl-C or SIGTERM here cancels what they run."""
        workers = min(self.jobs, len(targets), spare if spare is not None else len(targets))
        if not targets or self.stop.is_set():
            return
        todo = deque(targets)
        events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for number in range(max(workers, 1)):
            name = f"sqlmigrate-fleet-{number}"
            threading.Thread(target=self._work, args=(todo, events), name=name, daemon=True).start()
        alive = max(workers, 1)
        while alive:
            try:
                event = events.get()
                if event is None:
                    alive -= 1
                else:
                    event()
            except KeyboardInterrupt as exc:
                self._interrupted(exc)

    def _work(self, todo: deque[Target], events: queue.SimpleQueue[Any]) -> None:
        """A worker: the next target until there is none or the fleet stops; its connections
        (its own: Django's are per thread) closed when it moves to another database and at the end."""
        last: str | None = None
        try:
            while not self.stop.is_set():
                try:
                    target = todo.popleft()
                except IndexError:
                    break
                if last not in (None, target.database):
                    connections[last].close()
                last = target.database
                result = self._run_target(target, events)
                if result.failed and not self.keep_going:
                    self.stop.set()  # now, before this worker takes another
                events.put(lambda result=result: self._finish(result))
        except BaseException as exc:  # a bug: the fleet's thread raises it
            events.put(lambda exc=exc: self._crashed(exc))
        finally:
            connections.close_all()
            events.put(None)

    def _run_target(self, target: Target, events: queue.SimpleQueue[Any]) -> TargetResult:
        """Run the operation on one target, on this worker's connection; what became of it."""
        events.put(lambda: self.reporter.started(target))
        done: list[Result] = []
        started = perf_counter()

        def result(outcome: Outcome, error: SqlMigrateError | None = None, repairs: Sequence[Any] = ()) -> TargetResult:
            return TargetResult(target, outcome, tuple(done), tuple(repairs), error, (perf_counter() - started) * 1000)

        try:
            runner = MigrationRunner(
                target.database,
                self.directory(target),
                reporter=_Forward(self, target, events, done),
                loader=self.files.__getitem__,
                schema=target.schema,
                **self.runner_options,
            )
            with self._running_on(runner.backend):
                outcome = self.operation.run(runner, target)
        except SqlMigrateError as exc:
            return result(Outcome.INTERRUPTED if self.interrupt else Outcome.FAILED, exc)
        except _Stopped:  # interrupted before it started, or between two of its migrations
            return result(Outcome.INTERRUPTED if done else Outcome.NOT_STARTED)
        except KeyboardInterrupt as exc:  # a redo stopped part way: its message says what it left
            return result(Outcome.INTERRUPTED, SqlMigrateError(str(exc)))
        repairs = [item for item in outcome if isinstance(item, Repair)]
        changed = repairs or any(item.action != Action.SKIPPED for item in done)
        return result(self.operation.done if changed else self.operation.idle, repairs=repairs)

    @contextlib.contextmanager
    def _running_on(self, backend: Backend) -> Iterator[None]:
        """While a target runs, its backend is the one to cancel; none starts once interrupted."""
        with self.lock:
            if self.interrupt is not None:
                raise _Stopped
            self.running[threading.get_ident()] = backend
        try:
            yield
        finally:
            with self.lock:
                del self.running[threading.get_ident()]

    def _finish(self, result: TargetResult) -> None:
        """Keep a target's result and report it; a failure stops new targets unless keep_going."""
        self.results[result.target] = result
        self.reporter.finished(result)
        if result.failed and not self.keep_going:
            self.stop.set()

    def _interrupted(self, signal: KeyboardInterrupt) -> None:
        """Ctrl-C or SIGTERM: start nothing more, and cancel each running statement (its
        migration is rolled back); the workers then finish what they report."""
        with self.lock:
            if self.interrupt is None:
                self.interrupt = signal
            self.stop.set()
            backends = list(self.running.values())
        for backend in backends:
            backend.cancel()

    def _crashed(self, error: BaseException) -> None:
        """A worker raised what sqlmigrate does not: stop, and raise it once the workers are done."""
        self.crash = self.crash or error
        self.stop.set()

"""Rehearsals: each migration under test applied, rolled back and applied again in a throwaway
database, its schema compared at each step.

For each one: snapshot S0, UP, S1, DOWN, which must give S0 back, UP, which must give S1 back.
The migrations before it are applied first, by ``sqlmigrate_up``'s own ``migrate``; the
rehearsal's steps run through the same executor ``up`` and ``down`` use, each in a session of its
own as separate commands would be, and a step that fails (rolled back) does not stop the run. The
target database is only read, and only when the migrations under test are its pending ones: its
history, as ``sqlmigrate_status`` reads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from django.core.management import call_command

from . import conf, snapshot
from .directory import MigrationSet, load_directory
from .errors import SqlMigrateError, plural
from .executor import Reporter, Result
from .files import Migration
from .repeatables import Ordering
from .runner import MigrationRunner
from .selection import applied_on, applied_on_every_tenant, tenant_set_dir, under_test
from .snapshot import Change, Snapshot
from .throwaway import ThrowawayReporter, throwaway_database

# The schema of the throwaway database the tenant set is rehearsed in, as one tenant.
TENANT_SCHEMA = "sqlmigrate_tenant"


class Outcome(str, Enum):
    """What a migration's rehearsal showed."""

    OK = "ok"  # DOWN gave the schema before UP back, and UP again the schema after UP
    MISMATCH = "mismatch"  # one of them did not
    FAILED = "failed"  # a step's SQL failed
    IRREVERSIBLE = "irreversible"  # no DOWN section: applied, not rolled back
    NOT_VERIFIED = "not_verified"  # an earlier no-transaction step failed part way: the state is not known

    def __str__(self) -> str:
        return self.value


class Step(str, Enum):
    """The step of a rehearsal whose schema differs from the one it must give back."""

    DOWN = "down"
    UP_AGAIN = "up_again"
    APPLIED_TWICE = "applied_twice"  # a repeatable migration run a second time

    def __str__(self) -> str:
        return self.value


STEP_MESSAGES = {
    Step.DOWN: "DOWN left something behind (the schema differs from the one before UP)",
    Step.UP_AGAIN: "UP is not repeatable after DOWN (the schema differs from the one the first UP gave)",
    Step.APPLIED_TWICE: "a repeatable migration is not idempotent (run again, it gives another schema)",
}


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A step that did not give back the schema it must, and the objects that differ."""

    step: Step
    changes: tuple[Change, ...]

    @property
    def message(self) -> str:
        """What went wrong, in words."""
        return STEP_MESSAGES[self.step]

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return {"step": self.step.value, "message": self.message, "changes": [c.as_dict() for c in self.changes]}


@dataclass(frozen=True, slots=True)
class Rehearsal:
    """What became of one migration under test: UP, DOWN and UP again, each schema compared."""

    migration: Migration
    outcome: Outcome
    mismatches: tuple[Mismatch, ...] = ()
    error: str | None = None

    @property
    def passed(self) -> bool:
        """Whether this migration is fine as far as verify can tell (irreversible ones are)."""
        return self.outcome in (Outcome.OK, Outcome.IRREVERSIBLE)

    def as_dict(self) -> dict[str, Any]:
        """The ``sqlmigrate_verify --json`` object."""
        return {
            "id": self.migration.id,
            "file": str(self.migration.path),
            "transactional": self.migration.transactional,
            "outcome": self.outcome.value,
            "mismatches": [mismatch.as_dict() for mismatch in self.mismatches],
            "error": self.error,
        }


@dataclass
class Verification:
    """Every rehearsal of a run, and the throwaway database it ran in (None: nothing to verify)."""

    database: str | None
    results: list[Rehearsal] = field(default_factory=list)


class VerifyReporter(ThrowawayReporter):
    """Progress callbacks, and what becomes of the throwaway database; the default ignores
    them. Only the command prints."""

    def started(self, database: str, tested: list[Migration]) -> None:
        """The throwaway database exists; these migrations will be rehearsed."""

    def preparing(self, migrations: list[Migration]) -> None:
        """These migrations, which come before a migration under test, are about to be applied."""

    def verified(self, result: Rehearsal) -> None:
        """One migration's rehearsal is done."""


class _FilesReadOnce:
    """The runner's loader over files read once: they do not change while verify runs, and
    reading a thousand of them again for each of its steps would cost more than the steps."""

    def __init__(self, found: MigrationSet) -> None:
        self.found = found

    def __call__(self, directory: Path) -> MigrationSet:
        """The files, as they were read (or since left out)."""
        return self.found

    def leave_out(self, migration: Migration) -> None:
        """Go on as if ``migration``'s file were not there: its UP failed, so it is not applied,
        and a later ``up`` must not try it again."""
        kept = [m for m in self.found.migrations if m is not migration]
        self.found = MigrationSet(self.found.directory, kept, repeatables=self.found.repeatables)


@contextmanager
def _own_session(runner: MigrationRunner) -> Iterator[None]:
    """Each step in a session of its own (:meth:`~.runner.MigrationRunner.reset_session` after
    it): ``up`` and ``down`` are separate commands, so nothing a step leaves in its session (a
    temporary table, a prepared statement, a setting, an advisory lock) may reach the next one."""
    try:
        yield
    finally:
        runner.reset_session()


def verify(
    using: str,
    directory: str | Path | None = None,
    names: Sequence[str] = (),
    every: bool = False,
    keep: bool = False,
    reporter: VerifyReporter | None = None,
) -> Verification:
    """Rehearse the migrations named (or ``every`` one, or the pending ones) of ``using``'s
    directory in a throwaway database like ``using``'s; keep it afterwards if ``keep``."""
    reporter = reporter or VerifyReporter()
    using = conf.check_alias(using)
    found = load_directory(Path(directory) if directory else conf.migrations_dir(using))
    found.raise_first_error()
    target = MigrationRunner(using, found.directory, loader=_FilesReadOnce(found))  # only its history is read
    tested = under_test(found, names, every, lambda: applied_on(target))
    if not tested:
        return Verification(None)
    with throwaway_database(using, keep, reporter) as scratch:
        reporter.started(scratch.name, tested)
        files = _FilesReadOnce(found)
        runner = MigrationRunner(scratch.alias, found.directory, reporter=Reporter(), loader=files)
        last = found.migrations.index(tested[-1]) + 1 if not tested[-1].repeatable else len(found.migrations)
        _django_migrations(runner, [*found.migrations[:last], *found.repeatables])
        runner.create_history()
        results = _Rehearsals(runner, files, reporter).run(tested)
    return Verification(scratch.name, results)


def verify_tenant_set(
    using: str,
    shared_directory: str | Path | None = None,
    names: Sequence[str] = (),
    every: bool = False,
    keep: bool = False,
    reporter: VerifyReporter | None = None,
) -> Verification:
    """Rehearse the tenant set (``SQLMIGRATE_TENANT_DIR``) of ``using`` once, whatever the number
    of tenants: in the schema :data:`TENANT_SCHEMA` of a throwaway database, after every
    migration of the shared set (``shared_directory``'s, in its default schema, after the
    tenant's on the search path, as a tenant sees it). The migrations named, or ``every`` one,
    or those some tenant has not applied (:func:`~.selection.applied_on_every_tenant`: one read
    of every history)."""
    reporter = reporter or VerifyReporter()
    using = conf.check_alias(using)
    found = load_directory(tenant_set_dir(using))
    found.raise_first_error()
    shared = load_directory(Path(shared_directory) if shared_directory else conf.migrations_dir(using))
    shared.raise_first_error()
    tested = under_test(found, names, every, lambda: applied_on_every_tenant(using, found))
    if not tested:
        return Verification(None)
    with throwaway_database(using, keep, reporter) as scratch:
        reporter.started(scratch.name, tested)
        base = MigrationRunner(scratch.alias, shared.directory, reporter=Reporter(), loader=_FilesReadOnce(shared))
        _django_migrations(base, [*shared.migrations, *found.migrations])
        base.migrate()
        files = _FilesReadOnce(found)
        runner = MigrationRunner(
            scratch.alias, found.directory, reporter=Reporter(), loader=files, schema=TENANT_SCHEMA
        )
        runner.create_schema()
        runner.create_history()
        results = _Rehearsals(runner, files, reporter).run(tested)
    return Verification(scratch.name, results)


def _django_migrations(runner: MigrationRunner, migrations: list[Migration]) -> None:
    """Django's own migrations, when one of ``migrations`` requires one (``requires=``): as on a
    test database, they come first."""
    if any(migration.requires for migration in migrations):
        call_command("migrate", database=runner.using, interactive=False, verbosity=0, skip_checks=True)


class _Rehearsals:
    """The migrations under test rehearsed in turn, the ones before each applied first.

    A step that failed was rolled back, so the state is known and the run goes on: a migration
    whose DOWN failed stays applied; one whose UP failed is not applied, as after a failed
    ``up``, and is left out of the rest of the run (a later migration that needs it fails too,
    its error saying which is missing). Only a ``no-transaction`` step that failed may have run
    part of its statements: the migrations after it are not verified.
    """

    def __init__(self, runner: MigrationRunner, files: _FilesReadOnce, reporter: VerifyReporter) -> None:
        self.runner = runner
        self.files = files
        self.found = files.found  # every migration, the ones left out too
        self.reporter = reporter
        self.reader = snapshot.reader_for(runner.connection, runner.history.table)
        self.applied = 0  # the migrations of ``found`` before this index are applied (or left out)
        self.before: Snapshot | None = None  # the schema now, when known without reading it
        self.left_out: list[Migration] = []
        self.unknown: str | None = None  # why the state is not known, once it is not

    def run(self, tested: list[Migration]) -> list[Rehearsal]:
        """Every migration's rehearsal, in order, each told to the reporter as it ends."""
        results = []
        for migration in tested:
            result = self._one(migration) if not migration.repeatable else self._repeatable(migration)
            results.append(result)
            self.reporter.verified(result)
        return results

    def _repeatable(self, migration: Migration) -> Rehearsal:
        """A repeatable migration run once after every versioned one (and the repeatables before
        it), then again, as ``up`` runs it when it changes: the second run must give the schema
        the first gave."""
        if self.unknown is not None:
            return Rehearsal(migration, Outcome.NOT_VERIFIED, error=f"not verified: {self.unknown}")
        earlier = self.found.migrations[self.applied :]
        if earlier:
            _apply_earlier(self.runner, earlier, migration, self.reporter)
            self.applied = len(self.found.migrations)
        self.before = None
        order = Ordering(self.found.repeatables).order
        for repeatable in order[: order.index(migration) + 1]:
            if self.runner.is_applied(repeatable.id):
                continue
            try:
                _apply(self.runner, repeatable)
            except SqlMigrateError as exc:
                return Rehearsal(migration, Outcome.FAILED, error=f"it failed: {exc}")
        first = self.reader.take()
        try:
            _apply(self.runner, migration)
        except SqlMigrateError as exc:
            return Rehearsal(migration, Outcome.FAILED, error=f"run a second time, it failed: {exc}")
        again = self.reader.take()
        if again == first:
            return Rehearsal(migration, Outcome.OK)
        return Rehearsal(migration, Outcome.MISMATCH, (Mismatch(Step.APPLIED_TWICE, tuple(first.changes(again))),))

    def _one(self, migration: Migration) -> Rehearsal:
        if self.unknown is not None:
            return Rehearsal(migration, Outcome.NOT_VERIFIED, error=f"not verified: {self.unknown}")
        position = self.found.migrations.index(migration)
        earlier = self.found.migrations[self.applied : position]
        if earlier:
            self.before = None
            try:
                _apply_earlier(self.runner, earlier, migration, self.reporter)
            except SqlMigrateError as exc:
                if not self.left_out:
                    raise  # the set cannot be applied as it is: not a finding about one migration
                self.unknown = f"{exc}; {self._missing()}"
                return Rehearsal(migration, Outcome.NOT_VERIFIED, error=f"not verified: {self.unknown}")
        result, self.before = _rehearse(self.runner, self.reader, migration, self.before or self.reader.take())
        self.applied = position + 1
        if result.outcome == Outcome.FAILED and self.left_out:
            result = replace(result, error=f"{result.error} ({self._missing()})")
        if self.before is None:
            self._after_failure(migration)
        return result

    def _after_failure(self, migration: Migration) -> None:
        """Where a failed step left the throwaway database: the history says, for a migration
        that runs in a transaction."""
        if not migration.transactional:
            self.unknown = f"{migration.id} failed part way (no-transaction), so what is applied is not known"
        elif not self.runner.is_applied(migration.id):
            self.files.leave_out(migration)
            self.left_out.append(migration)

    def _missing(self) -> str:
        """Which migrations under test are not applied, their UP having failed."""
        ids = ", ".join(migration.id for migration in self.left_out)
        one = len(self.left_out) == 1
        return f"{ids} {'is' if one else 'are'} not applied: {'its UP' if one else 'their UPs'} failed"


def _apply_earlier(
    runner: MigrationRunner, earlier: list[Migration], migration: Migration, reporter: VerifyReporter
) -> None:
    """Apply the migrations before ``migration`` not applied yet, as ``up`` would."""
    reporter.preparing(earlier)
    try:
        with _own_session(runner):
            runner.migrate(to=earlier[-1].id)
    except SqlMigrateError as exc:
        raise SqlMigrateError(
            f"{exc} (while applying {plural(len(earlier), 'earlier migration')} to the throwaway database, "
            f"before {migration.id})"
        ) from exc


def _rehearse(
    runner: MigrationRunner, reader: snapshot.Reader, migration: Migration, before: Snapshot
) -> tuple[Rehearsal, Snapshot | None]:
    """UP, DOWN and UP again, each compared; the snapshot the database is left at (None when a
    step failed: it was rolled back). The steps are the executor's, as up and down run them,
    without planning again (verify knows what comes next) or the run lock (nobody else uses a
    throwaway database)."""
    try:
        _apply(runner, migration)
    except SqlMigrateError as exc:
        return Rehearsal(migration, Outcome.FAILED, error=f"UP failed: {exc}"), None
    after = reader.take()
    if not migration.reversible:
        return Rehearsal(migration, Outcome.IRREVERSIBLE), after
    try:
        with _own_session(runner):
            runner.revert_one(migration)
    except SqlMigrateError as exc:
        return Rehearsal(migration, Outcome.FAILED, error=f"DOWN failed: {exc}"), None
    mismatches = []
    undone = reader.take()
    if undone != before:
        mismatches.append(Mismatch(Step.DOWN, tuple(before.changes(undone))))
    try:
        _apply(runner, migration)
    except SqlMigrateError as exc:
        error = f"UP is not repeatable after DOWN: it failed: {exc}"
        return Rehearsal(migration, Outcome.FAILED, tuple(mismatches), error), None
    again = reader.take()
    if again != after:
        mismatches.append(Mismatch(Step.UP_AGAIN, tuple(after.changes(again))))
    return Rehearsal(migration, Outcome.MISMATCH if mismatches else Outcome.OK, tuple(mismatches)), again


def _apply(runner: MigrationRunner, migration: Migration) -> Result:
    """UP, in a session of its own."""
    with _own_session(runner):
        return runner.apply_one(migration)

"""Drift: whether a live database's schema is the one its applied migrations produce.

The migrations in the target's history are applied again, in the order they ran, to a
throwaway database (:mod:`.throwaway`, as verify's), after the Django migrations the target has
applied, and the two schemas are compared (:mod:`.snapshot`). The target is only read, in one
read-only transaction (:meth:`~.backends.Backend.read_only`): its history, Django's, and its
catalog. An applied migration whose file changed or went since it ran is reported, and nothing
is compared: what it applied is not known. :func:`compare`, one live schema against one rebuild,
is the step a per-schema (per-tenant) comparison repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader

from . import conf, snapshot
from .backends import backend_for
from .directory import MigrationSet, load_directory
from .errors import ConfigurationError, MissingMigration, ModifiedMigration, SqlMigrateError, plural, printable
from .executor import Reporter
from .files import Migration
from .repeatables import Ordering
from .runner import MigrationRunner
from .snapshot import Change, ChangeKind, Snapshot
from .state import MigrationStatus, Problem, State, StatusTable
from .throwaway import ThrowawayReporter, throwaway_database

# How each kind of difference reads, the live database against its rebuild: in the list of
# differences, and in the one-line summary.
WHERE = {
    ChangeKind.ADDED: "only in the live database (added by hand)",
    ChangeKind.REMOVED: "only in the rebuild (dropped by hand)",
    ChangeKind.CHANGED: "changed",
}
SHORT = {ChangeKind.ADDED: "added by hand", ChangeKind.REMOVED: "dropped by hand", ChangeKind.CHANGED: "changed"}
# Differences the one-line summary names before "and N more".
NAMED_IN_SUMMARY = 3
NEVER = datetime.min.replace(tzinfo=timezone.utc)  # a history row without executed_at sorts first

DjangoMigration = tuple[str, str]  # (app label, migration name)


class DriftReporter(ThrowawayReporter):
    """Progress callbacks, and what becomes of the throwaway database; the default ignores
    them. Only the command prints."""

    def rebuilding(self, database: str, migrations: list[Migration]) -> None:
        """The throwaway database exists; these applied migrations are about to be applied to it."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """How a live schema differs from its rebuild, object by object (``ADDED``: only in the
    live database; ``-`` lines the rebuild's, ``+`` lines the live database's), and the
    differing objects the ignore patterns left out."""

    changes: tuple[Change, ...]
    ignored: tuple[str, ...] = ()


def ignored_by(key: str, patterns: Sequence[str]) -> bool:
    """Whether an object, named ``KIND NAME`` as drift prints it (``table public.orders``), matches
    one of ``patterns`` (``fnmatch`` wildcards, case-sensitive: ``* monitoring.*``)."""
    return any(fnmatchcase(key, pattern) for pattern in patterns)


def compare(live: Snapshot, rebuilt: Snapshot, ignore: Sequence[str] = ()) -> Comparison:
    """How ``live`` differs from ``rebuilt``, but for the objects ``ignore`` names."""
    changes = rebuilt.changes(live)
    return Comparison(
        tuple(change for change in changes if not ignored_by(change.object, ignore)),
        tuple(change.object for change in changes if ignored_by(change.object, ignore)),
    )


@dataclass
class Drift:
    """What ``sqlmigrate_drift`` found: the applied migrations rebuilt, and how the live schema
    differs from theirs (None: not compared, because of ``problems``); both snapshots, for
    :mod:`.drift_sql`."""

    database: str
    applied: list[Migration]
    problems: list[Problem] = field(default_factory=list)
    comparison: Comparison | None = None
    live: Snapshot | None = None
    rebuilt: Snapshot | None = None
    throwaway: str | None = None

    @property
    def drifted(self) -> bool:
        """Whether the live schema differs (objects the ignore patterns name left out)."""
        return self.comparison is not None and bool(self.comparison.changes)

    def summary(self) -> str:
        """One line: whether the database drifted, naming the first differences."""
        migrations = plural(len(self.applied), "applied migration")
        if self.comparison is None:
            changed = plural(len(self.problems), "applied migration")
            they = "it" if len(self.problems) == 1 else "they"
            return f"database {self.database!r}: drift not checked: {changed} changed or went since {they} ran"
        changes = self.comparison.changes
        if not changes:
            verb = "produces" if len(self.applied) == 1 else "produce"
            return f"database {self.database!r} has the schema its {migrations} {verb}"
        named = [f"{SHORT[change.change]}: {printable(change.object)}" for change in changes[:NAMED_IN_SUMMARY]]
        more = f"; and {len(changes) - NAMED_IN_SUMMARY} more" if len(changes) > NAMED_IN_SUMMARY else ""
        return (
            f"database {self.database!r} has drifted from its {migrations}: {plural(len(changes), 'object')} "
            f"differ{'s' if len(changes) == 1 else ''} ({'; '.join(named)}{more})"
        )

    def as_dict(self) -> dict[str, Any]:
        """The ``sqlmigrate_drift --json`` object (``drifted`` null when not compared)."""
        compared = self.comparison
        return {
            "database": self.database,
            "applied": len(self.applied),
            "drifted": self.drifted if compared is not None else None,
            "problems": [problem.as_dict() for problem in self.problems],
            "changes": [change.as_dict() for change in compared.changes] if compared else [],
            "ignored": list(compared.ignored) if compared else [],
            "throwaway": self.throwaway,
        }


def drift(
    using: str,
    directory: str | Path | None = None,
    keep: bool = False,
    reporter: DriftReporter | None = None,
    rebuild_on: str | None = None,
) -> Drift:
    """Rebuild the migrations applied on ``using`` in a throwaway database made where ``using``'s
    own are, or ``rebuild_on``'s (kept afterwards if ``keep``), and compare the two schemas;
    ``using`` is only read."""
    reporter = reporter or DriftReporter()
    using = conf.check_alias(using)
    place = rebuild_place(using, rebuild_on)
    ignore = conf.drift_ignore()  # refused before anything is read
    found = load_directory(Path(directory) if directory else conf.migrations_dir(using))
    found.raise_first_error()
    target = MigrationRunner(using, found.directory, loader=lambda _: found)
    with target.backend.read_only():
        table = target.status_table()
        django = set(MigrationLoader(target.connection, ignore_no_migrations=True).applied_migrations)
        live = snapshot.take(target.connection, target.history.table)
    applied, problems = applied_files(table, found)
    if problems:
        return Drift(using, applied, problems)
    applied, unknown = known_repeatables(table, applied)
    with throwaway_database(place, keep, reporter) as scratch:
        reporter.rebuilding(scratch.name, applied)
        rebuilt = _rebuild(scratch.alias, found, applied, django)
    comparison = compare(live, rebuilt, [*ignore, *unknown])
    return Drift(using, applied, [], comparison, live, rebuilt, scratch.name)


def rebuild_place(using: str, rebuild_on: str | None) -> str:
    """The alias whose server (or directory) gets the throwaway database: ``rebuild_on``, which
    must be the same database as ``using`` (a CI service beside production), or ``using``."""
    if rebuild_on is None:
        return using
    place, target = connections[conf.check_alias(rebuild_on)], connections[using]
    if type(backend_for(place)) is not type(backend_for(target)):
        raise ConfigurationError(
            f"--rebuild-on {rebuild_on}: database {rebuild_on!r} is {place.display_name} and {using!r} is "
            f"{target.display_name}: rebuild on the same database as the one compared"
        )
    return rebuild_on


def applied_files(table: StatusTable, found: MigrationSet) -> tuple[list[Migration], list[Problem]]:
    """The files of the applied migrations in the order they ran (``executed_at``, then id), and
    a problem for each one whose file changed or went since."""
    rows = sorted((table.row(migration_id) for migration_id in table.applied), key=_ran)
    migrations, problems = [], []
    for row in rows:
        if row.state == State.MODIFIED and row.migration and row.stored_checksum:
            problems.append(Problem.of(ModifiedMigration(row.migration, row.stored_checksum)))
        elif row.state == State.MISSING:
            problems.append(Problem.of(MissingMigration(row.id, found.directory)))
        elif row.migration is not None:
            migrations.append(row.migration)
    return migrations, problems


def known_repeatables(table: StatusTable, applied: list[Migration]) -> tuple[list[Migration], list[str]]:
    """``applied`` without the repeatables changed since they ran (and those that depend on
    them), whose last run's SQL is not known: ``up`` runs them next, so what they create is left
    out of the comparison (the patterns returned), not reported as drift."""
    repeatables = [migration for migration in table.files.values() if migration.repeatable]
    ordering = Ordering(repeatables)
    changed = [migration.id for migration in repeatables if table.state(migration.id) == State.CHANGED]
    unknown = {*changed, *(i for migration_id in changed for i in ordering.dependents(migration_id))}
    patterns = [
        pattern
        for migration_id in sorted(unknown)
        for definition in ordering.defined[migration_id]
        for pattern in (f"* {definition.key}", f"* *.{definition.key}", f"* *.{definition.key}(*")
    ]
    return [migration for migration in applied if migration.id not in unknown], patterns


def _ran(row: MigrationStatus) -> tuple[datetime, str]:
    return (row.executed_at or NEVER, row.id)


def _rebuild(alias: str, found: MigrationSet, applied: list[Migration], django: set[DjangoMigration]) -> Snapshot:
    """The schema of ``applied`` in the empty database ``alias``: the Django migrations the
    target has (``django``) first, as on a test database, then each SQL migration as ``up``
    applies it."""
    runner = replay(alias, found, applied, django)
    return snapshot.take(runner.connection, runner.history.table)


def replay(
    alias: str,
    found: MigrationSet,
    applied: list[Migration],
    django: set[DjangoMigration] | None = None,
    schema: str | None = None,
) -> MigrationRunner:
    """Apply ``applied`` of ``found`` to the throwaway database ``alias`` (in the schema
    ``schema``, made first, as a tenant's runner applies the tenant set; else after the Django
    migrations ``django``), each as ``up`` applies it; the runner that did."""
    runner = MigrationRunner(alias, found.directory, reporter=Reporter(), loader=lambda _: found, schema=schema)
    _django_migrations(alias, django or set())
    if schema is not None:
        runner.create_schema()
    runner.create_history()
    for migration in applied:
        try:
            runner.apply_one(migration)
        except SqlMigrateError as exc:
            raise SqlMigrateError(
                f"{exc} (while rebuilding the {plural(len(applied), 'applied migration')} in a throwaway database)"
            ) from exc
    return runner


def _django_migrations(alias: str, applied: set[DjangoMigration]) -> None:
    """Apply to ``alias`` the Django migrations of ``applied`` (those the target has, a squashed
    one as the target's loader counts it) that this project still has, through Django's own
    executor: their tables then compare equal, and a Django migration not applied on the target
    yet is not drift."""
    if not applied:
        return
    connection = connections[alias]
    connection.prepare_database()  # as ``migrate`` does first (PostGIS: its extension)
    executor = MigrationExecutor(connection)
    graph = executor.loader.graph
    known = {key for key in applied if key in graph.nodes}
    # The last of each line: a target with an applied child would be planned backwards to.
    targets = sorted(key for key in known if not {child.key for child in graph.node_map[key].children} & known)
    if targets:
        executor.migrate(targets, plan=executor.migration_plan(targets))

"""Drift of a fleet: each database's shared set, and every tenant schema, against rebuilds of
what their histories say was applied.

Per database, in one read-only transaction of the target: the shared set's history, Django's,
every chosen tenant's history (:func:`~.tenants.read_histories`: a few queries, not one per
tenant) and one catalog snapshot of the whole database (the catalog queries are set-based: a
thousand schemas cost the same few queries as one). Tenants with the same **applied state** (the
same ids and checksums) share a rebuild: in one throwaway database, the shared set's applied
migrations first (Django's before them, as :mod:`.drift` does), then each distinct state of the
tenant set in a schema of its own, as a tenant's runner applies it (its schema first on the
search path, the shared schema after it). The snapshot is then taken apart by schema
(:mod:`.snapshot.schemas`) and each tenant compared with its state's rebuild, the rebuild's
schema written as the tenant's. A tenant whose applied file changed or went is reported, not
compared, as :mod:`.drift` does for a database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db.migrations.loader import MigrationLoader

from . import conf, snapshot
from .directory import MigrationSet, load_directory
from .drift import (
    Comparison,
    Drift,
    DriftReporter,
    applied_files,
    compare,
    known_repeatables,
    rebuild_place,
    replay,
)
from .errors import MissingSchema, SqlMigrateError, plural, printable
from .files import Migration
from .runner import MigrationRunner
from .snapshot import SchemaObject, Snapshot, schemas
from .state import Problem, StatusTable
from .tenants import Target, TenantHistory, read_histories
from .throwaway import throwaway_database

# The schema of the throwaway database each applied state of the tenant set is rebuilt in.
REBUILD_SCHEMA = "sqlmigrate_rebuild_{number}"
# Drifted (or not compared) tenants a summary names before "and N more".
NAMED = 5

State = tuple[tuple[str, str], ...]  # the (id, checksum) of each applied migration, in the order they ran


class FleetDriftReporter(DriftReporter):
    """:class:`~.drift.DriftReporter`, and each applied state of a tenant set as it is rebuilt."""

    def rebuilding_tenants(self, database: str, schema: str, migrations: list[Migration], tenants: int) -> None:
        """The applied state of ``tenants`` tenants (``migrations``) is about to be rebuilt in
        the schema ``schema`` of the throwaway database ``database``."""


@dataclass
class TenantDrift:
    """One tenant schema against the rebuild of its applied state (``rebuild``: that schema of
    the throwaway database); ``comparison`` None when not compared, because of ``problems`` (an
    applied file changed or went) or of ``error`` (its history cannot be read)."""

    target: Target
    applied: int = 0
    problems: list[Problem] = field(default_factory=list)
    comparison: Comparison | None = None
    error: SqlMigrateError | None = None
    rebuild: str | None = None

    @property
    def drifted(self) -> bool:
        """Whether the tenant's schema differs from its rebuild (ignored objects left out)."""
        return self.comparison is not None and bool(self.comparison.changes)

    def as_dict(self) -> dict[str, Any]:
        """The ``sqlmigrate_drift --json`` object of one tenant (``drifted`` null when not compared)."""
        compared = self.comparison
        return {
            "database": self.target.database,
            "tenant": self.target.schema,
            "applied": self.applied,
            "drifted": self.drifted if compared is not None else None,
            "problems": [problem.as_dict() for problem in self.problems],
            "changes": [change.as_dict() for change in compared.changes] if compared else [],
            "ignored": list(compared.ignored) if compared else [],
            "error": self.error.as_dict() if self.error else None,
            "rebuild": self.rebuild,
        }


@dataclass
class FleetDrift:
    """What drift found over a fleet: each database's shared set (a :class:`~.drift.Drift`, its
    tenants' schemas left out), each tenant, and how many applied states were rebuilt."""

    shared: list[Drift] = field(default_factory=list)
    tenants: list[TenantDrift] = field(default_factory=list)
    rebuilds: int = 0

    @property
    def drifted(self) -> bool:
        """Whether any shared set or tenant drifted."""
        return any(result.drifted for result in self.shared) or any(result.drifted for result in self.tenants)

    def as_list(self) -> list[dict[str, Any]]:
        """``--json``: an object per shared set (``tenant`` null), then one per tenant."""
        return [{"tenant": None, **result.as_dict()} for result in self.shared] + [
            result.as_dict() for result in self.tenants
        ]

    def tenant_summary(self) -> str:
        """``1000 tenants: 997 as their migrations left them, 2 drifted (tenant_0003, tenant_0412), 1 not
        compared (tenant_0009).``"""
        drifted = [result for result in self.tenants if result.drifted]
        unread = [result for result in self.tenants if result.comparison is None]
        clean = len(self.tenants) - len(drifted) - len(unread)
        parts = [f"{clean} as their migrations left them"]
        if drifted:
            parts.append(f"{len(drifted)} drifted ({named(drifted)})")
        if unread:
            parts.append(f"{len(unread)} not compared ({named(unread)})")
        return f"{plural(len(self.tenants), 'tenant')}: {', '.join(parts)}."

    def first_differences(self) -> str:
        """The first drifted histories and their first differences, in one line (``up --check-drift``)."""
        lines = [result.summary() for result in self.shared if result.drifted]
        for result in self.tenants:
            if result.drifted and result.comparison is not None:
                changes = result.comparison.changes
                first = "; ".join(f"{change.change}: {printable(change.object)}" for change in changes[:2])
                more = f"; and {len(changes) - 2} more" if len(changes) > 2 else ""
                lines.append(f"tenant {result.target.schema!r} has drifted ({first}{more})")
        return "; ".join(lines[:3]) + (f"; and {len(lines) - 3} more" if len(lines) > 3 else "")


def named(results: Sequence[TenantDrift]) -> str:
    """The first :data:`NAMED` tenants of ``results``, and how many more."""
    names = ", ".join(printable(str(result.target.schema)) for result in results[:NAMED])
    return names + (f" and {len(results) - NAMED} more" if len(results) > NAMED else "")


def drift_fleet(
    targets: Sequence[Target],
    directory: str | Path | None = None,
    keep: bool = False,
    reporter: FleetDriftReporter | None = None,
    rebuild_on: str | None = None,
) -> FleetDrift:
    """Compare each of ``targets`` (shared sets and tenants; ``directory``: the shared sets') with
    rebuilds of their applied migrations, one throwaway database per database (made where
    ``rebuild_on``'s are, if given), each applied state of a tenant set rebuilt once; the
    targets are only read."""
    reporter = reporter or FleetDriftReporter()
    ignore = conf.drift_ignore()  # refused before anything is read
    found = FleetDrift()
    for database in dict.fromkeys(target.database for target in targets):
        chosen = [target for target in targets if target.database == database]
        tenants = [target.schema for target in chosen if target.schema is not None]
        one = _Database(database, tenants, directory, ignore, keep)
        shared, tenant_results, rebuilds = one.run(
            len(tenants) < len(chosen), reporter, rebuild_place(database, rebuild_on)
        )
        found.shared += [shared] if shared is not None else []
        found.tenants += tenant_results
        found.rebuilds += rebuilds
    return found


@dataclass
class _Read:
    """What drift reads of one database, in one read-only transaction: its whole schema, its
    tenants' histories, the Django migrations it has, and the shared set's applied files (and
    problems)."""

    live: Snapshot
    histories: dict[str, TenantHistory]
    django: set[tuple[str, str]]
    applied: list[Migration]
    problems: list[Problem]
    left_out: list[str]  # what the repeatables changed since they ran create (drift.known_repeatables)


class _Database:
    """The drift of one database's shared set and tenants."""

    def __init__(
        self, database: str, tenants: list[str], directory: str | Path | None, ignore: Sequence[str], keep: bool
    ) -> None:
        self.database, self.tenants, self.ignore, self.keep = database, tenants, ignore, keep
        self.shared_files = _files(Path(directory) if directory else conf.migrations_dir(database))
        tenant_dir = conf.tenant_dir(database)
        self.tenant_files = _files(tenant_dir) if tenants and tenant_dir else MigrationSet(Path("."), [])
        self.table = conf.table_name()
        self.left_out: dict[str, list[str]] = {}  # by tenant: what its repeatables changed since they ran create

    def run(
        self, shared: bool, reporter: FleetDriftReporter, place: str
    ) -> tuple[Drift | None, list[TenantDrift], int]:
        """The shared set's drift (when ``shared``), each tenant's, and how many applied states were rebuilt."""
        read = self._read()
        results, states = self._states(read.histories)
        if not states and (not shared or read.problems):
            unread = Drift(self.database, read.applied, read.problems) if shared else None
            return unread, [results[tenant] for tenant in self.tenants], 0
        with throwaway_database(place, self.keep, reporter) as scratch:
            reporter.rebuilding(scratch.name, read.applied)
            runner = replay(scratch.alias, self.shared_files, read.applied, read.django)
            for schema, (migrations, members) in states.items():
                reporter.rebuilding_tenants(scratch.name, schema, migrations, len(members))
                replay(scratch.alias, self.tenant_files, migrations, schema=schema)
            rebuilt = snapshot.take(runner.connection, runner.history.table)
        live_rest, live_parts = self._live_parts(read.live)
        rebuilt_rest, rebuilt_parts = schemas.split(rebuilt, list(states))
        for schema, (migrations, members) in states.items():
            wanted = schemas.without(rebuilt_parts[schema], schema, self.table)
            for tenant in members:
                results[tenant] = self._tenant(tenant, migrations, live_parts, wanted, schema)
        drift = None
        if shared:
            comparison = compare(Snapshot(live_rest), Snapshot(rebuilt_rest), [*self.ignore, *read.left_out])
            drift = Drift(self.database, read.applied, read.problems, None if read.problems else comparison)
            drift.live, drift.rebuilt, drift.throwaway = Snapshot(live_rest), Snapshot(rebuilt_rest), scratch.name
        return drift, [results[tenant] for tenant in self.tenants], len(states)

    def _read(self) -> _Read:
        """Everything drift reads of the target, in one read-only transaction."""
        target = MigrationRunner(self.database, self.shared_files.directory, loader=lambda _: self.shared_files)
        with target.backend.read_only():
            table = target.status_table()
            django = set(MigrationLoader(target.connection, ignore_no_migrations=True).applied_migrations)
            live = snapshot.take(target.connection, target.history.table)
            histories = read_histories(self.database, self.tenants, self.tenant_files) if self.tenants else {}
        applied, problems = applied_files(table, self.shared_files)
        applied, left_out = known_repeatables(table, applied)
        return _Read(live, histories, django, applied, problems, left_out)

    def _states(
        self, histories: dict[str, TenantHistory]
    ) -> tuple[dict[str, TenantDrift], dict[str, tuple[list[Migration], list[str]]]]:
        """The tenants not to compare (their history unreadable, an applied file changed or
        gone), and the others by applied state: each state's rebuild schema, its migrations in the
        order they ran, and its tenants."""
        unread: dict[str, TenantDrift] = {}
        states: dict[State, tuple[list[Migration], list[str]]] = {}
        for tenant in self.tenants:
            history, target = histories[tenant], Target(self.database, tenant)
            if history.error is not None:
                unread[tenant] = TenantDrift(target, error=history.error)
                continue
            table = StatusTable(self.tenant_files, history.applied)
            applied, problems = applied_files(table, self.tenant_files)
            applied, self.left_out[tenant] = known_repeatables(table, applied)
            if problems:
                unread[tenant] = TenantDrift(target, len(applied) + len(problems), problems)
                continue
            key = tuple((migration.id, migration.checksum) for migration in applied)
            states.setdefault(key, (applied, []))[1].append(tenant)
        named = {REBUILD_SCHEMA.format(number=number): state for number, state in enumerate(states.values(), 1)}
        return unread, named

    def _live_parts(self, live: Snapshot) -> tuple[list[SchemaObject], dict[str, tuple[str, list[SchemaObject]]]]:
        """The live snapshot taken apart: the shared set's objects, and each tenant schema's (by
        its name, with its name as its objects are qualified). Left out of the shared set's: the
        chosen tenants' schemas, and any other schema with a history table of its own (another
        tenant's)."""
        quoted = schemas.schema_names(live)
        holders = schemas.history_holders(live, self.table)
        chosen = {tenant: quoted[tenant] for tenant in self.tenants if tenant in quoted}
        rest, parts = schemas.split(live, holders | set(chosen.values()))
        return rest, {tenant: (name, parts[name]) for tenant, name in chosen.items()}

    def _tenant(
        self,
        tenant: str,
        migrations: list[Migration],
        live: dict[str, tuple[str, list[SchemaObject]]],
        wanted: list[SchemaObject],
        rebuild: str,
    ) -> TenantDrift:
        """One tenant against its state's rebuild, the rebuild's schema named as the tenant's."""
        target = Target(self.database, tenant)
        if tenant not in live:  # a schema read_histories found and the catalog read did not: gone meanwhile
            return TenantDrift(target, len(migrations), error=MissingSchema(self.database, tenant))
        name, objects = live[tenant]
        own = Snapshot(schemas.without(objects, name, self.table))
        comparison = compare(own, schemas.moved(wanted, rebuild, name), [*self.ignore, *self.left_out[tenant]])
        return TenantDrift(target, len(migrations), comparison=comparison, rebuild=rebuild)


def _files(directory: Path) -> MigrationSet:
    """A directory's files; the first bad one raises."""
    found = load_directory(directory)
    found.raise_first_error()
    return found

"""Tenant schemas: which histories a command works on, and many tenants' histories read at once.

A database has its **shared set** (``SQLMIGRATE_DIR``, in its default schema) and, when
``SQLMIGRATE_TENANT_DIR`` names one, a **tenant set** that each tenant schema gets, with a history
of its own in that schema. A :class:`Target` is one of those histories; :func:`select_targets`
turns a command's choice (:class:`Selection`) into targets. :func:`read_histories` reads the
histories of every tenant of a database in a few queries (a catalog query, then the rows of the
tables that differ from the files), never one per tenant; :func:`target_status` says where a
history stands by the rules of :mod:`.state`. Only PostgreSQL has schemas
(:meth:`~.backends.Backend.schemas_unsupported` says so in one line elsewhere).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connections

from . import conf
from .backends import backend_for
from .directory import MigrationSet, load_directory
from .errors import ConfigurationError, HistoryTableError, MissingSchema, ProblemKind, SqlMigrateError, database_errors
from .files import is_repeatable
from .history import AppliedMigration, History, HistoryTable
from .requirements import unknown_requirements
from .runner import MigrationRunner
from .state import MigrationStatus, Problem, State, StatusTable, not_up_to_date, out_of_order, problems
from .statements import with_statements_checked

# Where a history stands, worst first: the first a status has names it (see TargetStatus.state).
STATE_ORDER = ("error", "history_table", "missing", "modified", "out_of_order", "behind")


@dataclass(frozen=True, order=True)
class Target:
    """One history: a database's shared set (``schema`` None) or the tenant set in one tenant
    schema of it."""

    database: str
    schema: str | None = None

    def __str__(self) -> str:
        """``default`` (the shared set) or ``default:acme`` (a tenant)."""
        return self.database if self.schema is None else f"{self.database}:{self.schema}"


@dataclass(frozen=True)
class Shard:
    """``--shard K/N``: the tenants whose schema name hashes to ``index`` of ``count``, a stable
    split, so that N processes (a Kubernetes Indexed Job) share a fleet with no coordination
    beyond each tenant's lock."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``K/N`` with 0 <= K < N; else one line saying so."""
        index, _, count = text.partition("/")
        if index.isdigit() and count.isdigit() and 0 <= int(index) < int(count):
            return cls(int(index), int(count))
        raise ConfigurationError(
            f"--shard {text}: give K/N, this process's share K of N (0 <= K < N), e.g. --shard 0/4 to --shard 3/4"
        )

    def holds(self, schema: str) -> bool:
        """Whether ``schema`` is in this shard: blake2b of its name, modulo N."""
        digest = hashlib.blake2b(schema.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index


@dataclass(frozen=True)
class Selection:
    """Which histories of each database a command works on: its shared set, and every tenant
    ``SQLMIGRATE_TENANTS`` lists where a tenant set is configured, or the ``named`` ones
    (``--tenant``); ``explicit`` when tenants were asked for (``--tenants``, ``--tenant``), so a
    database without a tenant set is an error rather than passed over; ``shard`` a share of them."""

    shared: bool = True
    tenants: bool = True
    named: tuple[str, ...] = ()
    explicit: bool = False
    shard: Shard | None = None


def select_targets(databases: Sequence[str], selection: Selection) -> list[Target]:
    """The targets of ``databases``, in order: each one's shared set, then its tenants (sorted
    by schema name). ``SQLMIGRATE_TENANTS`` is called once per database, and not at all for
    ``--tenant``."""
    targets: list[Target] = []
    for database in dict.fromkeys(databases):
        conf.check_alias(database)
        if selection.shared:
            targets.append(Target(database))
        targets += [Target(database, schema) for schema in tenant_schemas(database, selection)]
    return targets


def tenant_schemas(database: str, selection: Selection) -> list[str]:
    """The tenant schemas of ``database`` that ``selection`` takes."""
    if not (selection.tenants or selection.named):
        return []
    if conf.tenant_dir(database) is None:
        if selection.explicit:
            raise ConfigurationError(f"database {database!r} has no tenant set: set SQLMIGRATE_TENANT_DIR")
        return []
    backend = backend_for(connections[database])
    if not backend.has_schemas:
        raise backend.schemas_unsupported()
    names = sorted({conf.check_schema_name(name, "--tenant") for name in selection.named})
    schemas = names if selection.named else conf.tenants(database)
    return [schema for schema in schemas if selection.shard is None or selection.shard.holds(schema)]


# Reading many histories at once ------------------------------------------------------------------


@dataclass(frozen=True)
class TenantHistory:
    """One tenant's history as :func:`read_histories` found it: its rows by id (the files' own
    when ``matches``: the history holds exactly the files' ids and checksums, so it is up to
    date, and no row was read), or the ``error`` that keeps it from being read (its schema is
    missing, its table is another tool's)."""

    schema: str
    applied: Mapping[str, AppliedMigration] = field(default_factory=dict)
    matches: bool = False
    error: SqlMigrateError | None = None


def read_histories(
    database: str, schemas: Sequence[str], found: MigrationSet, table: str | None = None
) -> dict[str, TenantHistory]:
    """The history of each of ``schemas`` in ``database``, compared with a tenant set's
    ``found`` files, by schema: a catalog query, then one query per 500 history tables, on the
    calling thread's connection. A schema holding the shared set's history is refused."""
    connection = connections[database]
    backend = backend_for(connection)
    if not backend.has_schemas:
        raise backend.schemas_unsupported()
    history = HistoryTable(backend, table or conf.table_name())
    with database_errors(connection):
        refuse_shared_schema(database, backend.history_schema(), schemas)
        tables = backend.tenant_tables(history.table, schemas)
        unread = {
            schema: _known_unread(database, schema, history, found, *table)
            for schema, table in zip(schemas, tables, strict=True)
        }
        readable = [schema for schema in schemas if unread[schema] is None]
        every = [*found.migrations, *found.repeatables]
        rows = backend.tenant_rows(history.table, readable, {m.id: m.checksum for m in every})
    files = History.of(AppliedMigration(m.id, m.name, None, m.checksum) for m in every)
    read = {
        schema: TenantHistory(schema, files if held.matches else _applied(held.rows), held.matches)
        for schema, held in rows.items()
    }
    return {schema: unread[schema] or read[schema] for schema in schemas}


def refuse_shared_schema(database: str, shared: str | None, schemas: Sequence[str]) -> None:
    """A tenant list naming the schema of the shared set's history would mix two histories in one table."""
    if shared in schemas:
        raise ConfigurationError(
            f"database {database!r}: schema {shared!r} holds the shared set's history, so it cannot be a tenant's: "
            "leave it out of SQLMIGRATE_TENANTS, --tenant and migrate_tenant()"
        )


def _known_unread(
    database: str,
    schema: str,
    history: HistoryTable,
    found: MigrationSet,
    schema_exists: bool,
    columns: tuple[str, ...] | None,
) -> TenantHistory | None:
    """The history of a schema that the catalog alone tells (missing, no table yet, another
    tool's table); None when its rows are to be read."""
    if not schema_exists:
        return TenantHistory(schema, error=MissingSchema(database, schema))
    if columns is None:
        return TenantHistory(schema, matches=not found.migrations)
    try:
        history.check_columns(columns)
    except HistoryTableError as exc:
        return TenantHistory(schema, error=exc)
    return None


def _applied(rows: Iterable[tuple[str, str, str]]) -> History:
    """History rows ``(id, name, checksum)`` by id, oldest first, as :meth:`HistoryTable.read` gives them."""
    return History.of(AppliedMigration(row[0], row[1], None, row[2]) for row in rows)


# Where a history stands ------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetStatus:
    """Where one history stands (``sqlmigrate_status`` of a fleet): what keeps it from being up
    to date (``kinds``, as ``status --check`` counts them), how many migrations it records, which
    are pending (those older than its newest applied one also in ``out_of_order``), modified or
    missing; or the ``error`` that keeps it from being read."""

    target: Target
    kinds: frozenset[ProblemKind] = frozenset()
    applied: int = 0
    pending: tuple[str, ...] = ()
    out_of_order: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    error: SqlMigrateError | None = None

    @property
    def state(self) -> str:
        """``up to date``, or the worst of what is wrong (:data:`STATE_ORDER`): ``behind`` when
        migrations are merely pending, ``error`` when the history cannot be read at all."""
        if self.error is not None and self.error.kind is None:
            return "error"
        names = {"behind" if kind == ProblemKind.PENDING else kind.value for kind in self.kinds}
        return next((name for name in STATE_ORDER if name in names), "up to date")

    def as_dict(self) -> dict[str, Any]:
        """The ``sqlmigrate_status --json`` object of a history in a fleet."""
        return {
            "database": self.target.database,
            "tenant": self.target.schema,
            "state": self.state.replace("_", " "),
            "applied": self.applied,
            "pending": list(self.pending),
            "out_of_order": list(self.out_of_order),
            "modified": list(self.modified),
            "missing": list(self.missing),
            "error": self.error.as_dict() if self.error else None,
        }


def status_from_rows(target: Target, rows: Sequence[MigrationStatus]) -> TargetStatus:
    """Where ``target`` stands from its migrations' statuses (:meth:`~.runner.MigrationRunner.status`)."""
    pending = [row.id for row in rows if row.state.runs]  # a repeatable new or changed too
    late, _ = out_of_order(
        pending, (row.id for row in rows if row.stored_checksum is not None and not is_repeatable(row.id))
    )
    return TargetStatus(
        target,
        frozenset(not_up_to_date(list(rows))),
        applied=sum(1 for row in rows if row.stored_checksum is not None),
        pending=tuple(pending),
        out_of_order=tuple(late),
        modified=tuple(row.id for row in rows if row.state == State.MODIFIED),
        missing=tuple(row.id for row in rows if row.state == State.MISSING),
    )


def status_of_error(target: Target, error: SqlMigrateError) -> TargetStatus:
    """A history that cannot be read, or whose files cannot: the error says why."""
    return TargetStatus(target, frozenset({error.kind}) if error.kind else frozenset(), error=error)


def tenant_status(target: Target, found: MigrationSet, history: TenantHistory) -> TargetStatus:
    """Where a tenant stands, from its history as :func:`read_histories` found it."""
    if history.error is not None:
        return status_of_error(target, history.error)
    if history.matches:
        return TargetStatus(target, applied=len(history.applied))
    return status_from_rows(target, StatusTable(found, history.applied).rows())


def tenant_statuses(database: str, schemas: Sequence[str], found: MigrationSet) -> list[TargetStatus]:
    """Where each of ``schemas`` of ``database`` stands, with the tenant set's ``found`` files:
    :func:`read_histories`, then :func:`tenant_status`. For the admin page and ``status``."""
    histories = read_histories(database, schemas, found)
    return [tenant_status(Target(database, schema), found, histories[schema]) for schema in schemas]


def django_tenants_schemas(database: str) -> list[str]:
    """``SQLMIGRATE_TENANTS`` for django-tenants: the ``schema_name`` of every row of its
    ``TENANT_MODEL`` in ``database``, but the public schema's (the shared set's)."""
    from django_tenants.utils import get_public_schema_name, get_tenant_model

    tenants = get_tenant_model().objects.using(database).exclude(schema_name=get_public_schema_name())
    return [str(name) for name in tenants.values_list("schema_name", flat=True)]


# Reading a fleet: status and validate over many histories -------------------------------------


def _sets(targets: Sequence[Target]) -> Iterator[tuple[str, list[Target], Path]]:
    """Each database of ``targets`` with its tenants and their directory (tenants only)."""
    for database in dict.fromkeys(target.database for target in targets):
        tenants = [target for target in targets if target.database == database and target.schema is not None]
        directory = conf.tenant_dir(database)
        if tenants and directory is not None:
            yield database, tenants, directory


def fleet_statuses(targets: Sequence[Target], shared_directory: str | Path | None = None) -> list[TargetStatus]:
    """Where each of ``targets`` stands (``sqlmigrate_status``), in order: a shared set by its
    runner's :meth:`~.runner.MigrationRunner.status`, the tenants of a database by one read of
    their histories. Never writes. A tenant set with a bad file raises its first error."""
    found: dict[Target, TargetStatus] = {}
    for target in targets:
        if target.schema is None:
            runner = MigrationRunner(target.database, shared_directory)
            try:
                found[target] = status_from_rows(target, runner.status())
            except SqlMigrateError as exc:
                found[target] = status_of_error(target, exc)
    for database, tenants, directory in _sets(targets):
        files = load_directory(directory)
        files.raise_first_error()
        for status in tenant_statuses(database, [target.schema or "" for target in tenants], files):
            found[status.target] = status
    return [found[target] for target in targets]


@dataclass(frozen=True)
class FleetProblem:
    """One thing ``validate`` found wrong in a fleet: in a database's shared set (``tenant_set``
    False), in its tenant set's files (``tenant`` None), or in one tenant's history."""

    database: str
    tenant_set: bool
    tenant: str | None
    problem: Problem

    def as_dict(self) -> dict[str, Any]:
        """The ``sqlmigrate_validate --json`` object of a fleet's problem."""
        where = {"database": self.database, "set": "tenant" if self.tenant_set else "shared", "tenant": self.tenant}
        return where | self.problem.as_dict()


def validate_fleet(targets: Sequence[Target], shared_directory: str | Path | None = None) -> list[FleetProblem]:
    """Every problem of ``targets`` (``sqlmigrate_validate``): a shared set's as its runner finds
    them; a tenant set's files once per database; each tenant's history (modified, missing, out
    of order, another tool's table, no schema) from one read of them all. Never writes."""
    found: list[FleetProblem] = []
    for target in targets:
        if target.schema is None:
            runner = MigrationRunner(target.database, shared_directory)
            found += [FleetProblem(target.database, False, None, problem) for problem in runner.validate()]
    for database, tenants, directory in _sets(targets):
        files = load_directory(directory)
        checked = with_statements_checked(files)
        file_problems = [Problem.of(error) for error in [*checked.errors, *unknown_requirements(files.migrations)]]
        found += [FleetProblem(database, True, None, problem) for problem in file_problems]
        histories = read_histories(database, [target.schema or "" for target in tenants], files)
        for schema, history in histories.items():
            found += [FleetProblem(database, True, schema, problem) for problem in _history_problems(checked, history)]
    return found


def _history_problems(found: MigrationSet, history: TenantHistory) -> list[Problem]:
    """What is wrong with one tenant's history (its files' own problems are the tenant set's)."""
    if history.error is not None:
        return [Problem(history.error.kind or ProblemKind.HISTORY_TABLE, str(history.error))]
    if history.matches:
        return []
    return [
        problem for problem in problems(found, lambda: dict(history.applied)) if problem.kind != ProblemKind.BAD_FILE
    ]

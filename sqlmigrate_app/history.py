"""The history table: which migrations ran, when, and with which checksum.

Its shape is the Node.js runner's, so a table that runner made is adopted as it is. Other tools
(dbmate, golang-migrate) also call their table ``schema_migrations``; a table of another shape is
refused and never written to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import attrgetter
from typing import Any

from django.db import transaction

from .backends import Backend, HistoryName, HistoryRows
from .conf import TABLE_NAME_RULE, is_table_name
from .errors import HistoryTableError, database_error_types
from .files import REPEATABLE_PREFIX, is_repeatable

COLUMNS = ("id", "name", "executed_at", "checksum")
PLAIN_VALUE_RE = re.compile(r"[A-Za-z0-9_ ]*")


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """One row of the history table."""

    id: str
    name: str
    executed_at: datetime | None
    checksum: str


class History(dict[str, AppliedMigration]):
    """The applied versioned migrations by id, oldest first (what every plan reads), and the
    rows of repeatable migrations apart, by id, in :attr:`repeatables`: one read of the table
    gives both, and no versioned rule (out of order, missing) ever sees a repeatable's row."""

    def __init__(
        self, versioned: Iterable[AppliedMigration] = (), repeatables: Iterable[AppliedMigration] = ()
    ) -> None:
        super().__init__((row.id, row) for row in versioned)
        self.repeatables = {row.id: row for row in repeatables}

    @classmethod
    def of(cls, rows: Iterable[AppliedMigration]) -> History:
        """The rows of a table sorted into the two kinds, each in id order."""
        ordered = sorted(rows, key=attrgetter("id"))
        return cls(
            (row for row in ordered if not is_repeatable(row.id)), (row for row in ordered if is_repeatable(row.id))
        )


@dataclass(frozen=True)
class Expected:
    """What a migration's transaction expects of its history row (see
    :meth:`HistoryTable.premise`): there (``present``) or not; with ``checksum``, there with
    that checksum, or not there with it. A versioned migration: absent before it is applied,
    there before it is rolled back. A repeatable one: its row as the plan saw it (absent, or
    with the checksum it last ran with), so that one another runner re-applied meanwhile
    (with this file's checksum) is not run again; when the plan is not known, not there with
    this file's checksum."""

    migration_id: str
    present: bool
    checksum: str | None = None


def repeatable_rows(applied: Mapping[str, AppliedMigration]) -> dict[str, AppliedMigration]:
    """The repeatables' rows a read of the history found (none in a mapping made otherwise)."""
    return applied.repeatables if isinstance(applied, History) else {}


def _as_utc(value: Any) -> datetime | None:
    """A stored ``executed_at`` as an aware UTC datetime: the column has no time zone, and
    sqlmigrate writes it in UTC (:attr:`HistoryTable.utc_now`), whatever the session's zone."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


class HistoryTable:
    """The history table of one database: reads it, creates it, and writes its rows; what
    depends on the database, the backend says."""

    def __init__(self, backend: Backend, table: str) -> None:
        if not is_table_name(table):
            raise HistoryTableError(f"SQLMIGRATE_TABLE {table!r} is not a valid table name ({TABLE_NAME_RULE})")
        self.backend = backend
        self.connection = backend.connection
        self.table = table
        self.quoted = self.connection.ops.quote_name(table)
        self.tenant: str | None = None  # the tenant schema it is pinned to (see pin_tenant)
        # executed_at is written in UTC, not left to the column's default: the session's zone is
        # Django's TIME_ZONE without USE_TZ, and a psql session's own for an ``up --sql`` script.
        self.utc_now = backend.utc_now_sql

    def pin(self, schema: str | None) -> None:
        """Name the table with its schema from now on, whatever ``search_path`` a migration sets."""
        quote = self.connection.ops.quote_name
        self.quoted = f"{quote(schema)}.{quote(self.table)}" if schema else quote(self.table)

    def pin_tenant(self, schema: str) -> None:
        """The history of the tenant whose schema is ``schema``: the table in that schema, which
        must exist (:class:`~.errors.MissingSchema` otherwise, when the table is looked up)."""
        self.pin(schema)
        self.tenant = schema

    @property
    def name(self) -> HistoryName:
        """The table as the backend looks it up and reads it."""
        return HistoryName(self.table, self.quoted, self.tenant)

    def exists(self) -> bool:
        """Whether the table is there (a missing one reads as an empty history): one catalog
        lookup of this one name, named as :meth:`pin` named it
        (:meth:`~.backends.Backend.history_table_exists`)."""
        return self.backend.history_table_exists(*self.name)

    def check_columns(self, names: Sequence[str]) -> None:
        """Refuse a table whose columns are not the history's: another tool's."""
        columns = sorted(name.lower() for name in names)
        if columns != sorted(COLUMNS):
            raise HistoryTableError(
                f"table {self.table!r} exists but is not a sqlmigrate history table "
                f"(its columns are {', '.join(columns)}; expected {', '.join(COLUMNS)}). "
                "Another tool may own it: set SQLMIGRATE_TABLE to another name."
            )

    def create_sql(self) -> str:
        """The table in the Node.js runner's shape, unless it exists."""
        return (
            f"CREATE TABLE IF NOT EXISTS {self.quoted} ("
            " id VARCHAR(255) PRIMARY KEY,"
            " name VARCHAR(255) NOT NULL,"
            " executed_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,"
            " checksum VARCHAR(64) NOT NULL)"
        )

    def create(self) -> None:
        """Create the table (see :meth:`create_sql`), unless it exists."""
        if not self.exists():  # spares PostgreSQL's "relation already exists" notice
            self.create_missing()

    def create_missing(self) -> None:
        """Create the table a read under the run lock just found missing: no second lookup. On a
        transaction-pooled alias (no run lock of the run's own) under the run lock taken for the
        creating transaction (:meth:`~.backends.Backend.transaction_lock`)."""
        locked = self.backend.transaction_lock()  # runners without a run lock: one at a time
        try:
            with (
                transaction.atomic(using=self.connection.alias) if locked else nullcontext(),
                self.connection.cursor() as cursor,
            ):
                for sql in [*locked, self.create_sql()]:
                    cursor.execute(sql)
        except database_error_types(self.connection) as exc:  # rolled back: the holder can be asked
            raise (self.backend.claim_error(exc) or exc) from None

    def read(self, create: bool = False) -> History:
        """Every applied migration by id, oldest first, the repeatables' rows apart: the one
        history query of a command.

        Without ``create`` a missing table reads as empty and nothing is written.
        """
        found = self.backend.read_history(self.name)
        if found is None and create:
            self.create_missing()
        return self.applied(found)

    def applied(self, found: HistoryRows | None) -> History:
        """The applied migrations by id, oldest first, the repeatables' rows apart (see
        :class:`History`), from the rows ``found`` (None: no table), the table's shape checked
        first."""
        return History.of(self._rows(found))

    def _rows(self, found: HistoryRows | None) -> list[AppliedMigration]:
        if found is None:
            return []
        names = [name.lower() for name in found.columns]
        self.check_columns(names)
        i, n, e, c = (names.index(column) for column in COLUMNS)
        # Straight into AppliedMigration: no list of every row as tuples or dicts between.
        return [AppliedMigration(row[i], row[n], _as_utc(row[e]), row[c]) for row in found.rows]

    def read_one(self, migration_id: str) -> AppliedMigration | None:
        """The row of one migration, or None (also when there is no table): for a page that
        shows one migration and must not read 10,000 rows to do it. Never writes."""
        if not self.exists():
            return None
        self._select(" WHERE 1 = 0")  # the shape first: another tool's table may have no id column
        rows = self._select(" WHERE id = %s", [migration_id])
        return rows[0] if rows else None

    def _select(self, where: str, params: list[str] | None = None) -> list[AppliedMigration]:
        with self.connection.cursor() as cursor:
            # SELECT * so that one query both checks the table's shape and reads it.
            cursor.execute(f"SELECT * FROM {self.quoted}{where}", params)
            found = HistoryRows([column[0] for column in cursor.description], cursor.fetchall())
            return self._rows(found)

    def insert_sql(self, migration_id: str, name: str, checksum: str) -> str:
        """The history INSERT as one literal statement, to travel with a section in its round
        trip. Only for values that need no escaping (as file names and hex checksums give)."""
        values = f"{_literals(migration_id, name, checksum)}, {self.utc_now}"
        return f"INSERT INTO {self.quoted} (id, name, checksum, executed_at) VALUES ({values})"

    def premise(self, expected: Sequence[Expected], applied: Sequence[str] | None) -> str:
        """A condition true while the history is as a plan expects it before a transaction runs
        the migrations of ``expected``: each one's row as :class:`Expected` says, and the newest
        versioned row the newest of ``applied`` (the versioned ids the run expects, in order;
        None: not known). The repeatables' rows never count as the newest (``R__`` sorts after
        the timestamps). A lookup of the primary key's index per row, whatever the number of rows."""
        conditions = [self._row_premise(row) for row in expected]
        if applied is not None:
            newest = _literals(applied[-1]) if applied else "''"
            versioned = f"substr(id, 1, {len(REPEATABLE_PREFIX)}) <> {_literals(REPEATABLE_PREFIX)}"
            conditions.append(f"COALESCE((SELECT max(id) FROM {self.quoted} WHERE {versioned}), '') = {newest}")
        return " AND ".join(conditions) or "TRUE"

    def _row_premise(self, row: Expected) -> str:
        checksum = f" AND checksum = {_literals(row.checksum)}" if row.checksum is not None else ""
        found = f"EXISTS (SELECT 1 FROM {self.quoted} WHERE id = {_literals(row.migration_id)}{checksum})"
        return found if row.present else f"NOT {found}"

    def replace_sql(self, migration_id: str, name: str, checksum: str) -> list[str]:
        """A repeatable migration's row written afresh (its checksum and ``executed_at`` the new
        run's), as two literal statements, the INSERT last (see :meth:`insert_sql`)."""
        return [self.delete_sql(migration_id), self.insert_sql(migration_id, name, checksum)]

    def delete_sql(self, migration_id: str) -> str:
        """The history DELETE as one literal statement (see :meth:`insert_sql`)."""
        return f"DELETE FROM {self.quoted} WHERE id = {_literals(migration_id)}"

    def insert(self, migration_id: str, name: str, checksum: str) -> None:
        """Record a migration as applied (values are bound parameters)."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {self.quoted} (id, name, checksum, executed_at) VALUES (%s, %s, %s, {self.utc_now})",
                [migration_id, name, checksum],
            )

    def contains(self, migration_id: str) -> bool:
        """Whether the row of ``migration_id`` is there (after an interrupted run: did it commit?)."""
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {self.quoted} WHERE id = %s", [migration_id])
            return cursor.fetchone() is not None

    def update_checksum(self, migration_id: str, checksum: str) -> bool:
        """Record a new checksum for an applied migration (``sqlmigrate_repair``); False when
        the row was gone."""
        with self.connection.cursor() as cursor:
            cursor.execute(f"UPDATE {self.quoted} SET checksum = %s WHERE id = %s", [checksum, migration_id])
            return bool(cursor.rowcount > 0)

    def delete(self, migration_id: str) -> bool:
        """Remove a row; False when it was already gone (another runner rolled it back)."""
        with self.connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {self.quoted} WHERE id = %s", [migration_id])
            return bool(cursor.rowcount > 0)


def _literals(*values: str) -> str:
    if not all(PLAIN_VALUE_RE.fullmatch(value) for value in values):
        raise ValueError(f"not plain history values: {values!r}")
    return ", ".join(f"'{value}'" for value in values)

"""The history table: which migrations ran, when, and with which checksum.

Its shape is the Node.js runner's, so a table that runner made is adopted as it is. Other tools
(dbmate, golang-migrate) also call their table ``schema_migrations``; a table of another shape is
refused and never written to.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import attrgetter
from typing import Any

from django.db import transaction

from .backends import Backend, HistoryName, HistoryRows
from .conf import TABLE_NAME_RULE, is_table_name
from .errors import HistoryTableError, database_error_types

COLUMNS = ("id", "name", "executed_at", "checksum")
PLAIN_VALUE_RE = re.compile(r"[A-Za-z0-9_ ]*")


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """One row of the history table."""

    id: str
    name: str
    executed_at: datetime | None
    checksum: str


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

    def read(self, create: bool = False) -> dict[str, AppliedMigration]:
        """Every applied migration by id, oldest first: the one history query of a command.

        Without ``create`` a missing table reads as empty and nothing is written.
        """
        found = self.backend.read_history(self.name)
        if found is None and create:
            self.create_missing()
        return self.applied(found)

    def applied(self, found: HistoryRows | None) -> dict[str, AppliedMigration]:
        """The applied migrations by id, oldest first, from the rows ``found`` (None: no table),
        the table's shape checked first."""
        if found is None:
            return {}
        names = [name.lower() for name in found.columns]
        self.check_columns(names)
        i, n, e, c = (names.index(column) for column in COLUMNS)
        # Straight into AppliedMigration: no list of every row as tuples or dicts between.
        applied = [AppliedMigration(row[i], row[n], _as_utc(row[e]), row[c]) for row in found.rows]
        applied.sort(key=attrgetter("id"))
        return {migration.id: migration for migration in applied}

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
            return list(self.applied(found).values())

    def insert_sql(self, migration_id: str, name: str, checksum: str) -> str:
        """The history INSERT as one literal statement, to travel with a section in its round
        trip. Only for values that need no escaping (as file names and hex checksums give)."""
        values = f"{_literals(migration_id, name, checksum)}, {self.utc_now}"
        return f"INSERT INTO {self.quoted} (id, name, checksum, executed_at) VALUES ({values})"

    def premise(self, migration_id: str, applying: bool, applied: Sequence[str] | None) -> str:
        """A condition true while the history is as a plan expects it before ``migration_id``
        runs: its row absent (``applying``) or present, and the newest row the newest of
        ``applied`` (the ids the run expects, in order; None: not known). Two lookups of the
        primary key's index, whatever the number of rows."""
        own = f"{'NOT ' if applying else ''}EXISTS (SELECT 1 FROM {self.quoted} WHERE id = {_literals(migration_id)})"
        if applied is None:
            return own
        newest = _literals(applied[-1]) if applied else "''"
        return f"{own} AND COALESCE((SELECT max(id) FROM {self.quoted}), '') = {newest}"

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

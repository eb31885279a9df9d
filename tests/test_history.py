"""The history table takes its values as bound parameters, never as SQL text.

No value a user controls can carry a quote there today (ids and names come from file names limited
to ``[a-z0-9_]``, checksums are hex), so this goes through :class:`HistoryTable` itself, the one
place that writes those columns, with values that would break naive quoting.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections

from sqlmigrate_app.backends import backend_for
from sqlmigrate_app.errors import HistoryTableError
from sqlmigrate_app.history import HistoryTable

HOSTILE_ID = "20240101000000_it's"
HOSTILE_NAME = "x'); DROP TABLE schema_migrations; --"
HOSTILE_CHECKSUM = "\\'\"; SELECT 1 /* %s %(x)s"


def test_history_values_are_bound_parameters(target: Any) -> None:
    history = HistoryTable(backend_for(connections[target.alias]), "schema_migrations")
    history.create()

    history.insert(HOSTILE_ID, HOSTILE_NAME, HOSTILE_CHECKSUM)

    [row] = history.read().values()
    assert (row.id, row.name, row.checksum) == (HOSTILE_ID, HOSTILE_NAME, HOSTILE_CHECKSUM)
    assert target.query("SELECT count(*) FROM schema_migrations WHERE name = %s", [HOSTILE_NAME]) == [(1,)]
    assert history.delete(HOSTILE_ID)
    assert "schema_migrations" in target.tables() and history.read() == {}


def test_exists_looks_up_the_one_table(target: Any) -> None:
    history = HistoryTable(backend_for(connections[target.alias]), "schema_migrations")
    target.query("CREATE TABLE schema_migrations_old (id INTEGER)")
    target.query("CREATE TABLE other_table (id INTEGER)")

    assert not history.exists()
    history.create()
    assert history.exists()


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_exists_on_postgresql_resolves_the_name_as_the_queries_do(target: Any) -> None:
    history = HistoryTable(backend_for(connections[target.alias]), "schema_migrations")
    target.query("CREATE SCHEMA elsewhere")
    target.query("CREATE TABLE elsewhere.schema_migrations (id VARCHAR(255))")

    assert not history.exists()  # not on search_path: SELECT * FROM schema_migrations would not see it
    history.pin("elsewhere")
    assert history.exists()
    history.pin("public")
    assert not history.exists()


def test_read_one_reads_one_row_and_never_writes(target: Any) -> None:
    history = HistoryTable(backend_for(connections[target.alias]), "schema_migrations")

    assert history.read_one("20240101000000_a") is None
    assert "schema_migrations" not in target.tables()

    history.create()
    history.insert("20240101000000_a", "A", "c" * 64)
    history.insert("20240101000001_b", "B", "d" * 64)
    row = history.read_one("20240101000001_b")

    assert row is not None and (row.id, row.name, row.checksum) == ("20240101000001_b", "B", "d" * 64)
    assert row.executed_at is not None
    assert history.read_one("20240101000002_c") is None


def test_read_one_refuses_a_table_of_another_shape(target: Any) -> None:
    target.query("CREATE TABLE schema_migrations (version VARCHAR(255) PRIMARY KEY)")
    history = HistoryTable(backend_for(connections[target.alias]), "schema_migrations")

    with pytest.raises(HistoryTableError, match="is not a sqlmigrate history table"):
        history.read_one("20240101000000_a")

"""The history table: whether it exists and has its shape, a table the Node.js runner made
(adopted), ``executed_at`` in UTC whatever the session's time zone, and values taken as bound
parameters, never as SQL text.

No value a user controls can carry a quote there today (ids and names come from file names limited
to ``[a-z0-9_]``, checksums are hex), so the parameters are checked through :class:`HistoryTable`
itself, the one place that writes those columns, with values that would break naive quoting.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from django.db import connections

from sqlmigrate_app.backends import backend_for
from sqlmigrate_app.errors import HistoryTableError, ProblemKind
from sqlmigrate_app.history import HistoryTable
from sqlmigrate_app.management.base import EXIT_CODES

from .support.migrations import FIRST, SECOND
from .support.target import ok

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


def test_a_history_table_made_by_the_nodejs_runner_is_adopted(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);", "DROP TABLE a;")
    target.migration(SECOND, "CREATE TABLE b (id INTEGER);", "DROP TABLE b;")
    now = "NOW()" if target.vendor == "postgresql" else "CURRENT_TIMESTAMP"
    target.query(
        "CREATE TABLE schema_migrations (id VARCHAR(255) PRIMARY KEY, name VARCHAR(255) NOT NULL, "
        f"executed_at TIMESTAMP DEFAULT {now}, checksum VARCHAR(64) NOT NULL)"
    )
    node_checksum = hashlib.sha256((target.directory / f"{FIRST}.sql").read_bytes()).hexdigest()
    target.query("INSERT INTO schema_migrations (id, name, checksum) VALUES (%s, %s, %s)", [FIRST, "A", node_checksum])
    target.query("CREATE TABLE a (id INTEGER)")
    result = ok(target.call("sqlmigrate_up"))
    assert f"Applying {FIRST}" not in result.out and f"Applying {SECOND}" in result.out
    assert target.history() == [FIRST, SECOND]
    ok(target.call("sqlmigrate_status", check=True))
    target.query("UPDATE schema_migrations SET checksum = %s WHERE id = %s", ["0" * 64, FIRST])
    assert target.call("sqlmigrate_validate").code == EXIT_CODES[ProblemKind.MODIFIED]


def test_executed_at_is_utc_whatever_the_session_time_zone(target, settings):
    """Without USE_TZ Django sets the PostgreSQL session to TIME_ZONE; the history still holds UTC."""
    settings.USE_TZ, settings.TIME_ZONE = False, "Asia/Tokyo"
    target.migration("20240101000001_one", "CREATE TABLE one (id integer);")
    from django.db import connections

    connections[target.alias].close()  # reconnect with the new zone
    assert target.call("sqlmigrate_up").code == 0

    utc_now = "SELECT CURRENT_TIMESTAMP AT TIME ZONE 'UTC'" if target.vendor == "postgresql" else None
    rows = target.query("SELECT executed_at FROM schema_migrations")
    if utc_now:
        (now,) = target.query(utc_now)[0]
        assert abs((now - rows[0][0]).total_seconds()) < 60
    status = json.loads(target.call("sqlmigrate_status", "--json").out)
    # The same shape from both databases: to the second, in UTC.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", status[0]["executed_at"])

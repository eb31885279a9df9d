"""A failing migration's SQL runs once, and the error names its line with the server's whole
message: DETAIL and HINT included."""

from __future__ import annotations

import pytest

from .support.migrations import big_section

pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)


def make_probe_sequence(target) -> None:
    target.query("CREATE SEQUENCE probe_seq")


@pg_only
def test_a_failing_migration_runs_once_even_when_the_error_has_no_position(target):
    # Sequences are not transactional: each run of the SQL would advance it again.
    make_probe_sequence(target)
    target.migration("20240101000000_probe", "SELECT nextval('probe_seq');\n\nSELECT 1/0;")

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "20240101000000_probe.sql:4: 20240101000000_probe failed: division by zero" in result.err
    assert target.query("SELECT last_value FROM probe_seq") == [(1,)]


@pg_only
def test_a_failing_do_block_is_located_without_running_it_again(target):
    make_probe_sequence(target)
    up = (
        "CREATE TABLE t (id integer);\n"
        "DO $$\nBEGIN\n  PERFORM nextval('probe_seq');\n  RAISE EXCEPTION 'no good';\nEND\n$$;\n"
        "INSERT INTO t VALUES (1);"
    )
    target.migration("20240101000000_do", up)

    result = target.call("sqlmigrate_up")

    assert "20240101000000_do.sql:3: 20240101000000_do failed: no good" in result.err
    assert target.query("SELECT last_value FROM probe_seq") == [(1,)]


@pg_only
def test_a_big_section_failing_without_position_runs_once_and_names_its_line(target):
    make_probe_sequence(target)
    up = "SELECT nextval('probe_seq');\n" + big_section() + "INSERT INTO big VALUES (7, 'again');\n"
    target.migration("20240101000000_big", up)

    result = target.call("sqlmigrate_up")

    # Line 1 "-- UP", 2 nextval, 3 CREATE TABLE, then 20,000 INSERTs, then the duplicate.
    assert f"20240101000000_big.sql:{4 + 20_000}: 20240101000000_big failed: duplicate key" in result.err
    assert target.query("SELECT last_value FROM probe_seq") == [(1,)]
    assert target.history() == []


def test_a_unique_violation_says_which_key(target):
    target.migration(
        "20240101000000_dup",
        "CREATE TABLE u (id INTEGER PRIMARY KEY);\nINSERT INTO u VALUES (1);\nINSERT INTO u VALUES (1);",
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "20240101000000_dup.sql:4: 20240101000000_dup failed:" in result.err
    if target.vendor == "postgresql":
        assert 'violates unique constraint "u_pkey" (DETAIL: Key (id)=(1) already exists.)' in result.err
    assert "u" not in target.tables()


@pg_only
def test_the_servers_hint_is_part_of_the_message(target):
    target.migration("20240101000000_hint", "SELECT no_such_function(1);")

    result = target.call("sqlmigrate_up")

    assert "function no_such_function(integer) does not exist (HINT: No function matches" in result.err
    assert len(result.err.strip().splitlines()) == 1


@pg_only
def test_a_connection_error_of_the_sqls_own_connection_is_not_a_lost_connection(target):
    # CREATE SUBSCRIPTION connects to its publisher (create_slot = false lets it run in a
    # transaction); that connection failing is the migration's error, not sqlmigrate's.
    target.migration(
        "20240101000000_sub",
        "CREATE SUBSCRIPTION nowhere CONNECTION 'host=127.0.0.1 port=1 dbname=x connect_timeout=2'"
        " PUBLICATION p WITH (create_slot = false, enabled = false);",
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "20240101000000_sub.sql:2: 20240101000000_sub failed: " in result.err
    assert "lost the connection" not in result.err
    assert result.err.endswith("[rolled back, nothing of it was applied or recorded]")
    assert target.query("SELECT 1") == [(1,)]

"""sqlmigrate_drift: the live schema against a rebuild of its applied migrations. What drift by hand
looks like (an index added, a column dropped, a default changed, a function edited), what is not
drift (Django's tables, the ignore list), a file changed since it ran, and the target only read."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connections

from sqlmigrate_app.errors import ProblemKind
from sqlmigrate_app.management.base import EXIT_CODES, EXIT_DRIFT

from .support.target import Target

pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)
sqlite_only = pytest.mark.parametrize("target", ["sqlite"], indirect=True)

ORDERS = "20240101000001_create_orders"
ORDERS_TABLE = {"postgresql": "table public.orders", "sqlite": "table orders"}


def orders(target: Target) -> None:
    target.migration(
        ORDERS,
        "CREATE TABLE orders (id integer PRIMARY KEY, total integer DEFAULT 0, note text);",
        "DROP TABLE orders;",
    )


def applied(target: Target) -> None:
    """The orders migration applied, then a second one, so the rebuild has an order to keep."""
    orders(target)
    target.migration("20240101000002_create_notes", "CREATE TABLE notes (id integer, body text);", "DROP TABLE notes;")
    assert target.call("sqlmigrate_up").code == 0


def by_hand(target: Target, *statements: str) -> None:
    """Change the live database as a person at a console would, outside sqlmigrate."""
    for statement in statements:
        target.query(statement)
    connections[target.alias].close()


def drift(target: Target, *args: str, **options: object):
    return target.call("sqlmigrate_drift", *args, **options)


def as_json(target: Target) -> dict[str, Any]:
    result = drift(target, "--json")
    return {"code": result.code, **json.loads(result.out)}


def test_a_database_as_its_migrations_left_it_has_not_drifted(target):
    applied(target)

    result = drift(target)

    assert result.code == 0, result.text
    assert "Rebuilding 2 applied migrations in the throwaway database " in result.out
    assert f"No drift: database {target.alias!r} has the schema its 2 applied migrations produce." in result.out


def test_an_index_added_by_hand_is_drift(target):
    applied(target)
    by_hand(target, "CREATE INDEX orders_total_idx ON orders (total)")

    result = as_json(target)

    assert result["code"] == EXIT_DRIFT
    assert result["drifted"] is True
    [change] = result["changes"]
    if target.vendor == "postgresql":  # an index is a line of its table
        assert (change["change"], change["object"]) == ("changed", "table public.orders")
        assert (
            "+     index orders_total_idx: CREATE INDEX orders_total_idx ON public.orders USING btree (total)"
            in (change["diff"])
        )
    else:
        assert (change["change"], change["object"]) == ("added", "index orders_total_idx on orders")


def test_a_column_dropped_by_hand_is_drift(target):
    applied(target)
    by_hand(target, "ALTER TABLE orders DROP COLUMN note")

    result = drift(target)

    assert result.code == EXIT_DRIFT, result.text
    assert f"  changed: {ORDERS_TABLE[target.vendor]}\n" in result.out
    removed = [line.strip() for line in result.out.splitlines() if line.strip().startswith("- ")]
    assert removed == (["-     column note text"] if target.vendor == "postgresql" else ["-     note text"])
    assert "has drifted from its 2 applied migrations: 1 object differs (changed: " in result.err


def test_a_default_changed_by_hand_is_drift(target):
    applied(target)
    if target.vendor == "postgresql":
        by_hand(target, "ALTER TABLE orders ALTER COLUMN total SET DEFAULT 1")
    else:  # SQLite changes a default by building the table again
        by_hand(
            target,
            "CREATE TABLE orders_new (id integer PRIMARY KEY, total integer DEFAULT 1, note text)",
            "INSERT INTO orders_new SELECT * FROM orders",
            "DROP TABLE orders",
            "ALTER TABLE orders_new RENAME TO orders",
        )

    [change] = as_json(target)["changes"]

    assert change["change"] == "changed"
    assert [line for line in change["diff"] if line[0] in "+-"] == (
        ["-     column total integer default 0", "+     column total integer default 1"]
        if target.vendor == "postgresql"
        else ["-     total integer DEFAULT 0", "+     total integer DEFAULT 1"]
    )


@pg_only
def test_a_function_body_edited_by_hand_is_drift(target):
    target.migration(
        "20240101000001_tax",
        "CREATE FUNCTION tax(amount numeric) RETURNS numeric LANGUAGE sql AS $$ SELECT amount * 0.2 $$;",
        "DROP FUNCTION tax(numeric);",
    )
    assert target.call("sqlmigrate_up").code == 0
    by_hand(
        target,
        "CREATE OR REPLACE FUNCTION tax(amount numeric) RETURNS numeric LANGUAGE sql AS $$ SELECT amount * 0.25 $$",
    )

    result = drift(target)

    assert result.code == EXIT_DRIFT, result.text
    assert "  changed: function public.tax(amount numeric)\n" in result.out
    assert "    -     AS $function$ SELECT amount * 0.2 $function$\n" in result.out
    assert "    +     AS $function$ SELECT amount * 0.25 $function$\n" in result.out


@sqlite_only
def test_a_trigger_body_edited_by_hand_is_drift(target):
    orders(target)
    target.migration(
        "20240101000002_count_orders",
        "CREATE TABLE counts (n integer);\n"
        "CREATE TRIGGER orders_counted AFTER INSERT ON orders BEGIN UPDATE counts SET n = n + 1; END;",
    )
    assert target.call("sqlmigrate_up").code == 0
    by_hand(
        target,
        "DROP TRIGGER orders_counted",
        "CREATE TRIGGER orders_counted AFTER INSERT ON orders BEGIN UPDATE counts SET n = n + 2; END",
    )

    [change] = as_json(target)["changes"]

    assert (change["change"], change["object"]) == ("changed", "trigger orders_counted on orders")
    assert change["diff"][1:] == [
        "-     CREATE TRIGGER orders_counted AFTER INSERT ON orders BEGIN UPDATE counts SET n = n + 1; END",
        "+     CREATE TRIGGER orders_counted AFTER INSERT ON orders BEGIN UPDATE counts SET n = n + 2; END",
    ]


def test_a_database_without_a_history_table_is_compared_and_left_without_one(target):
    orders(target)
    by_hand(target, "CREATE TABLE audit (id integer)")

    result = as_json(target)

    assert result["code"] == EXIT_DRIFT
    assert result["applied"] == 0
    assert [change["change"] for change in result["changes"]] == ["added"]
    assert "schema_migrations" not in target.tables()


def test_objects_added_and_dropped_by_hand_are_named_as_such(target):
    applied(target)
    by_hand(target, "CREATE TABLE audit (id integer)", "DROP TABLE notes")

    result = drift(target)

    assert result.code == EXIT_DRIFT, result.text
    table = "table public." if target.vendor == "postgresql" else "table "
    assert f"  only in the live database (added by hand): {table}audit\n" in result.out
    assert f"  only in the rebuild (dropped by hand): {table}notes\n" in result.out
    assert f"added by hand: {table}audit" in result.err and f"dropped by hand: {table}notes" in result.err


def test_a_migration_file_changed_since_it_ran_is_reported_and_nothing_compared(target):
    applied(target)
    by_hand(target, "CREATE TABLE audit (id integer)")
    path = target.directory / f"{ORDERS}.sql"
    path.write_text(path.read_text() + "\n-- edited after it ran\n")

    text = drift(target)
    result = as_json(target)

    assert text.code == result["code"] == EXIT_CODES[ProblemKind.MODIFIED]
    assert "Rebuilding" not in text.out  # no throwaway database: nothing to compare with
    assert f"{path}: changed since it was applied" in text.out
    assert "drift not checked: 1 applied migration changed or went since it ran" in text.err
    assert result["drifted"] is None and result["changes"] == [] and result["throwaway"] is None
    assert [problem["kind"] for problem in result["problems"]] == ["modified"]


def test_a_migration_file_gone_since_it_ran_is_reported_and_nothing_compared(target):
    applied(target)
    (target.directory / f"{ORDERS}.sql").unlink()

    result = drift(target)

    assert result.code == EXIT_CODES[ProblemKind.MISSING], result.text
    assert f"migration {ORDERS} was applied but its file is missing" in result.out


def test_the_migrations_are_rebuilt_in_the_order_they_ran(target):
    target.migration("20240101000002_orders", "CREATE TABLE orders (id integer PRIMARY KEY);", "DROP TABLE orders;")
    assert target.call("sqlmigrate_up").code == 0
    target.migration("20240101000001_lines", "CREATE TABLE lines (order_id integer REFERENCES orders (id));")
    assert target.call("sqlmigrate_up", allow_out_of_order=True).code == 0
    by_hand(
        target, "UPDATE schema_migrations SET executed_at = '2024-01-01 00:00:00' WHERE id = '20240101000002_orders'"
    )

    result = drift(target)

    assert result.code == 0, result.text  # in id order, lines would fail: orders is not there yet


def test_a_migration_that_fails_in_the_rebuild_is_one_line(target):
    orders(target)
    assert target.call("sqlmigrate_up").code == 0
    target.migration("20240101000002_needs_a_row", "INSERT INTO orders VALUES (1, 0, NULL);")
    assert target.call("sqlmigrate_up").code == 0
    target.migration("20240101000003_twice", "INSERT INTO orders VALUES (1, 0, NULL);")  # applied by hand as fake
    assert target.call("sqlmigrate_up", fake=True).code == 0

    result = drift(target)

    assert result.code == 1
    [line] = result.err.strip().splitlines()
    assert "20240101000003_twice failed" in line
    assert line.endswith("(while rebuilding the 3 applied migrations in a throwaway database)")


# Django's own tables --------------------------------------------------------------------------


def test_django_s_own_tables_are_not_drift(target):
    applied(target)
    call_command("migrate", database=target.alias, verbosity=0, interactive=False)

    result = drift(target)

    assert result.code == 0, result.text


def test_a_django_migration_the_database_does_not_have_yet_is_not_drift(target):
    applied(target)
    call_command("migrate", "contenttypes", database=target.alias, verbosity=0, interactive=False)
    call_command("migrate", "auth", "0001", database=target.alias, verbosity=0, interactive=False)

    result = drift(target)

    assert result.code == 0, result.text


# The ignore list ------------------------------------------------------------------------------

MONITORING = {
    "postgresql": (
        ["CREATE SCHEMA monitoring", "CREATE TABLE monitoring.samples (taken timestamptz)"],
        ["schema monitoring", "* monitoring.*"],
    ),
    "sqlite": (["CREATE TABLE monitoring_samples (taken text)"], ["table monitoring_*"]),
}


def test_objects_the_ignore_list_names_are_left_out(target, settings):
    applied(target)
    statements, patterns = MONITORING[target.vendor]
    by_hand(target, *statements, "CREATE TABLE audit (id integer)")
    settings.SQLMIGRATE_DRIFT_IGNORE = patterns

    result = as_json(target)

    assert result["code"] == EXIT_DRIFT
    assert [change["object"] for change in result["changes"]] == [
        "table public.audit" if target.vendor == "postgresql" else "table audit"
    ]
    assert len(result["ignored"]) == len(statements)


def test_with_only_ignored_objects_there_is_no_drift(target, settings):
    applied(target)
    statements, patterns = MONITORING[target.vendor]
    by_hand(target, *statements)
    settings.SQLMIGRATE_DRIFT_IGNORE = patterns

    result = drift(target)

    assert result.code == 0, result.text
    assert f"Left out by SQLMIGRATE_DRIFT_IGNORE: {len(statements)} differing object" in result.out


@pytest.mark.parametrize("value", ["table audit", ["audit"], [3]])
def test_an_ignore_list_that_cannot_match_is_refused_in_one_line(target, settings, value):
    applied(target)
    settings.SQLMIGRATE_DRIFT_IGNORE = value

    result = drift(target)

    assert result.code == 1
    assert "SQLMIGRATE_DRIFT_IGNORE" in result.err and len(result.err.strip().splitlines()) == 1
    assert "Rebuilding" not in result.out  # refused before anything is read or made


# The target is only read -----------------------------------------------------------------------


def server_of(target: Target) -> str:
    return target.url.rsplit("/", 1)[0] + "/postgres"


def writes(target: Target) -> tuple[int, int, int]:
    """The target's rows inserted, updated and deleted, from pg_stat_database (a session writes
    its counters out as it ends: every one on the target is waited for)."""
    name = target.url.rsplit("/", 1)[1]
    connections[target.alias].close()
    with psycopg.connect(server_of(target), autocommit=True) as admin:
        deadline = time.monotonic() + 30
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]).fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline, "sessions on the target database did not end"
            time.sleep(0.05)
        admin.execute("SELECT pg_stat_clear_snapshot()")
        row = admin.execute(
            "SELECT tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = %s", [name]
        ).fetchone()
    assert row is not None
    return tuple(row)


@pg_only
def test_the_target_is_only_read_and_a_read_only_database_will_do(target):
    applied(target)
    by_hand(target, "CREATE INDEX orders_total_idx ON orders (total)")
    name = target.url.rsplit("/", 1)[1]
    with psycopg.connect(server_of(target), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    tables, history = target.tables(), target.history()
    before = writes(target)

    result = target.manage("sqlmigrate_drift", "--json")

    assert result.returncode == EXIT_DRIFT, result.stderr
    assert json.loads(result.stdout)["changes"][0]["object"] == "table public.orders"
    assert writes(target) == before
    assert (target.tables(), target.history()) == (tables, history)


@pg_only
def test_drift_waits_for_no_lock_the_application_holds(target):
    applied(target)
    holding, release = threading.Event(), threading.Event()

    def application() -> None:  # a long transaction that writes, and locks out all but readers
        with psycopg.connect(target.url) as conn:
            conn.execute("LOCK TABLE orders, notes IN EXCLUSIVE MODE")
            conn.execute("INSERT INTO orders VALUES (1, 0, NULL)")
            holding.set()
            release.wait(60)

    thread = threading.Thread(target=application)
    thread.start()
    holding.wait(10)
    try:
        result = target.manage("sqlmigrate_drift", timeout=60)
    finally:
        release.set()
        thread.join()

    assert result.returncode == 0, result.stdout + result.stderr


@sqlite_only
def test_the_sqlite_file_is_left_as_it_was(target):
    applied(target)
    connections[target.alias].close()
    path = Path(target.url.removeprefix("sqlite:///"))
    before = (path.read_bytes(), path.stat().st_mtime_ns, sorted(path.parent.iterdir()))

    result = target.manage("sqlmigrate_drift")

    assert result.returncode == 0, result.stdout + result.stderr
    assert (path.read_bytes(), path.stat().st_mtime_ns, sorted(path.parent.iterdir())) == before


def test_drift_that_is_wanted_goes_into_a_migration_faked_as_applied(target):
    applied(target)
    by_hand(target, "CREATE INDEX orders_total_idx ON orders (total)")
    target.migration("20240101000003_index_totals", "CREATE INDEX IF NOT EXISTS orders_total_idx ON orders (total);")

    before = drift(target)
    faked = target.call("sqlmigrate_up", fake=True)
    after = drift(target)

    assert before.code == EXIT_DRIFT
    assert faked.code == 0, faked.text
    assert after.code == 0, after.text
    assert "its 3 applied migrations produce" in after.out


@pytest.mark.parametrize("value", ["table audit", ["audit"], [3], {"table audit": True}])
def test_the_system_check_reports_an_ignore_list_that_cannot_match(settings, tmp_path, value):
    settings.SQLMIGRATE_DIR = tmp_path
    settings.SQLMIGRATE_DRIFT_IGNORE = value

    found = [message.id for message in run_checks(tags=["sqlmigrate"])]
    settings.SQLMIGRATE_DRIFT_IGNORE = ["extension pg_stat_statements", "schema monitoring", "* monitoring.*", "*tmp*"]
    fixed = [message.id for message in run_checks(tags=["sqlmigrate"])]

    assert (found, fixed) == (["sqlmigrate.E012"], [])

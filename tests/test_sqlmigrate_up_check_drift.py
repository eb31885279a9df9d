"""sqlmigrate_up --check-drift: pending migrations refused on a drifted database, in one line that
names the first differences and how to see them all; applied as usual on one that has not."""

from __future__ import annotations

from django.db import connections

from sqlmigrate_app.management.base import EXIT_DRIFT

from .support.target import Target

PENDING = "20240101000002_create_notes"


def applied_and_pending(target: Target) -> None:
    target.migration("20240101000001_create_orders", "CREATE TABLE orders (id integer PRIMARY KEY, total integer);")
    assert target.call("sqlmigrate_up").code == 0
    target.migration(PENDING, "CREATE TABLE notes (id integer);", "DROP TABLE notes;")


def by_hand(target: Target, *statements: str) -> None:
    for statement in statements:
        target.query(statement)
    connections[target.alias].close()


def test_a_drifted_database_gets_nothing_applied(target):
    applied_and_pending(target)
    by_hand(target, "CREATE TABLE audit (id integer)")

    result = target.call("sqlmigrate_up", check_drift=True)

    assert result.code == EXIT_DRIFT
    [line] = result.err.strip().splitlines()
    audit = "table public.audit" if target.vendor == "postgresql" else "table audit"
    assert line == (
        f"not applying anything: database 'target' has drifted from its 1 applied migration: 1 object differs "
        f"(added by hand: {audit}); see them all with 'manage.py sqlmigrate_drift --database target'"
    )
    assert PENDING not in target.history()
    assert "notes" not in target.tables()


def test_the_line_names_the_first_three_differences(target):
    applied_and_pending(target)
    by_hand(target, *(f"CREATE TABLE audit_{n} (id integer)" for n in range(5)))

    result = target.call("sqlmigrate_up", check_drift=True)

    assert result.code == EXIT_DRIFT
    assert "5 objects differ (added by hand: " in result.err
    assert "audit_2; and 2 more); see them all with" in result.err


def test_a_database_that_has_not_drifted_gets_its_migrations(target):
    applied_and_pending(target)

    result = target.call("sqlmigrate_up", check_drift=True)

    assert result.code == 0, result.text
    assert result.out.startswith(
        "No drift: database 'target' has the schema its 1 applied migration produces.\nApplying " + PENDING
    )
    assert PENDING in target.history()


def test_a_modified_migration_is_refused_as_up_refuses_it(target):
    applied_and_pending(target)
    path = target.directory / "20240101000001_create_orders.sql"
    path.write_text(path.read_text() + "-- edited\n")

    checked = target.call("sqlmigrate_up", check_drift=True)
    plain = target.call("sqlmigrate_up")

    assert (checked.code, checked.err) == (plain.code, plain.err)
    assert "changed since it was applied" in checked.err


def test_the_sql_script_holds_only_sql(target):
    applied_and_pending(target)

    result = target.call("sqlmigrate_up", check_drift=True, sql=True)

    assert result.code == 0, result.text
    assert result.out.startswith("-- sqlmigrate_up --sql: 1 migration")

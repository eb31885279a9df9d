"""Repeatable migrations (``R__<name>.sql``, issue 22): run by ``up`` after the versioned ones
when new or changed, in an order that works, their managed dependents re-created with them;
shown by status, --json and --check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from sqlmigrate_app.errors import MigrationFileError
from sqlmigrate_app.executor import Action, Side
from sqlmigrate_app.files import parse_migration
from sqlmigrate_app.history import AppliedMigration
from sqlmigrate_app.repeatables import Definition, Ordering, definitions, plan_repeatables
from sqlmigrate_app.runner import MigrationRunner

from .support.admin_demo import detail_url, list_url, listed_rows
from .support.fleet import make_fleet
from .support.migrations import FIRST, SECOND
from .support.target import ok
from .test_script import run_script

BASE = "DROP VIEW IF EXISTS base_v;\nCREATE VIEW base_v AS SELECT id, name FROM items;\n"
TOP = "DROP VIEW IF EXISTS top_v;\nCREATE VIEW top_v AS SELECT name FROM base_v;\n"


def items(target):
    target.migration(
        FIRST, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price INTEGER);", "DROP TABLE items;"
    )


def relations(target):
    """Tables and views (``Target.tables`` lists tables only)."""
    with connections[target.alias].cursor() as cursor:
        return set(connections[target.alias].introspection.table_names(cursor, include_views=True))


def rows(target):
    return dict(target.query("SELECT id, checksum FROM schema_migrations WHERE id LIKE 'R%%' ORDER BY id"))


def test_up_runs_the_versioned_migrations_then_each_new_repeatable_with_its_row(target):
    items(target)
    target.write("R__base_v.sql", BASE)

    result = ok(target.call("sqlmigrate_up"))

    lines = result.out.splitlines()
    assert lines[0].startswith(f"Applying {FIRST}...") and lines[1].startswith("Applying R__base_v... OK")
    assert target.history() == [FIRST, "R__base_v"]
    assert target.query("SELECT name FROM schema_migrations WHERE id = 'R__base_v'") == [("Base V",)]
    assert target.query("SELECT count(*) FROM base_v") == [(0,)]


def test_an_unchanged_repeatable_does_not_run_again_and_a_changed_one_does(target):
    items(target)
    target.write("R__base_v.sql", BASE)
    ok(target.call("sqlmigrate_up"))
    first = rows(target)

    assert ok(target.call("sqlmigrate_up")).out == "No pending migrations.\n"

    target.write("R__base_v.sql", BASE.replace("id, name", "id, name, price"))
    result = ok(target.call("sqlmigrate_up"))

    assert "Applying R__base_v... OK" in result.out
    assert rows(target)["R__base_v"] != first["R__base_v"]
    assert target.query("SELECT price FROM base_v") == []


def test_a_file_reverted_to_an_earlier_content_runs_again(target):
    items(target)
    target.write("R__base_v.sql", BASE)
    ok(target.call("sqlmigrate_up"))
    target.write("R__base_v.sql", BASE.replace("id, name", "id, name, price"))
    ok(target.call("sqlmigrate_up"))

    target.write("R__base_v.sql", BASE)
    result = ok(target.call("sqlmigrate_up"))

    assert "Applying R__base_v... OK" in result.out
    columns = [
        c.name
        for c in connections[target.alias].introspection.get_table_description(
            connections[target.alias].cursor(), "base_v"
        )
    ]
    assert columns == ["id", "name"]


def test_a_failed_repeatable_leaves_the_previous_definition_and_runs_again_next_time(target):
    items(target)
    target.write("R__base_v.sql", BASE)
    ok(target.call("sqlmigrate_up"))
    before = rows(target)
    target.write("R__base_v.sql", BASE.replace("FROM items", "FROM items WHERE"))

    failed = target.call("sqlmigrate_up")

    assert failed.code == 1 and "R__base_v.sql:2: R__base_v failed" in failed.err
    assert rows(target) == before
    assert target.query("SELECT count(*) FROM base_v") == [(0,)]
    target.write("R__base_v.sql", BASE.replace("id, name", "name"))
    assert "Applying R__base_v... OK" in ok(target.call("sqlmigrate_up")).out


def test_status_shows_repeatables_applied_changed_and_new_and_check_counts_them_pending(target):
    items(target)
    target.write("R__base_v.sql", BASE)
    target.write("R__top_v.sql", TOP)
    ok(target.call("sqlmigrate_up"))
    target.write("R__top_v.sql", TOP + "-- a comment\n")
    target.write("R__z_other.sql", "DROP VIEW IF EXISTS other_v;\nCREATE VIEW other_v AS SELECT 1 AS one;\n")

    text = ok(target.call("sqlmigrate_status")).out
    listed = json.loads(ok(target.call("sqlmigrate_status", json=True)).out)
    check = target.call("sqlmigrate_status", check=True)

    assert re.search(r"Executed \| R__base_v \| Base V \| \d{4}-", text)
    assert "Changed  | R__top_v | Top V" in text
    assert "New      | R__z_other | Z Other" in text
    assert [(row["id"], row["state"], row["repeatable"]) for row in listed] == [
        (FIRST, "applied", False),
        ("R__base_v", "applied", True),
        ("R__top_v", "changed", True),
        ("R__z_other", "new", True),
    ]
    assert check.code == 3 and "2 pending migrations: run sqlmigrate_up" in check.text


def test_a_repeatable_runs_after_the_one_whose_object_it_uses_whatever_their_names(target):
    items(target)
    target.write("R__a_top.sql", TOP)
    target.write("R__z_base.sql", BASE)

    result = ok(target.call("sqlmigrate_up"))

    assert result.out.index("R__z_base") < result.out.index("R__a_top")
    assert target.query("SELECT count(*) FROM top_v") == [(0,)]


def test_requires_names_the_repeatable_to_run_first(target):
    items(target)
    target.write("R__a.sql", "-- sqlmigrate: requires=R__b\nCREATE TABLE IF NOT EXISTS log_a (x INTEGER);\n")
    target.write("R__b.sql", "CREATE TABLE IF NOT EXISTS log_b (x INTEGER);\n")

    result = ok(target.call("sqlmigrate_up"))

    assert result.out.index("R__b...") < result.out.index("R__a...")


def test_a_cycle_is_refused_at_load_naming_both_files_and_nothing_runs(target):
    items(target)
    target.write("R__a.sql", "-- sqlmigrate: requires=R__b\nCREATE TABLE IF NOT EXISTS log_a (x INTEGER);\n")
    target.write("R__b.sql", "-- sqlmigrate: requires=R__a\nCREATE TABLE IF NOT EXISTS log_b (x INTEGER);\n")

    for command, options, code in (
        ("sqlmigrate_up", {}, 1),
        ("sqlmigrate_up", {"plan": True}, 1),
        ("sqlmigrate_up", {"sql": True}, 1),
        ("sqlmigrate_validate", {}, 7),
    ):
        result = target.call(command, **options)
        assert result.code == code, result.text
        assert "R__a.sql: R__a and R__b.sql depend on each other" in result.err
        assert len(result.err.strip().splitlines()) == (2 if command == "sqlmigrate_validate" else 1)
        assert f"Applying {FIRST}" not in result.out
    assert "schema_migrations" not in target.tables()


def test_a_requires_naming_no_repeatable_is_refused(target):
    target.write("R__a.sql", "-- sqlmigrate: requires=R__gone\nCREATE TABLE IF NOT EXISTS log_a (x INTEGER);\n")

    result = target.call("sqlmigrate_up")

    assert result.code == 1 and "R__a.sql: requires=R__gone: there is no R__gone.sql in the directory" in result.err


def test_a_changed_view_is_re_created_with_the_managed_views_over_it_in_one_transaction(target):
    items(target)
    target.write("R__v01.sql", "DROP VIEW IF EXISTS v01;\nCREATE VIEW v01 AS SELECT id, name FROM items;\n")
    for n in range(2, 51):
        target.write(
            f"R__v{n:02}.sql", f"DROP VIEW IF EXISTS v{n:02};\nCREATE VIEW v{n:02} AS SELECT * FROM v{n - 1:02};\n"
        )
    ok(target.call("sqlmigrate_up"))
    target.write("R__v01.sql", "DROP VIEW IF EXISTS v01;\nCREATE VIEW v01 AS SELECT id, price FROM items;\n")

    result = ok(target.call("sqlmigrate_up"))

    assert result.out.count("... OK") == 50
    assert target.query("SELECT price FROM v50") == []
    if target.vendor == "postgresql":  # now() is the transaction's start: one transaction wrote every row
        assert target.query("SELECT count(DISTINCT executed_at) FROM schema_migrations WHERE id LIKE 'R%%'") == [(1,)]


def test_a_no_op_up_with_200_unchanged_repeatables_reads_the_history_once_and_runs_nothing(target):
    items(target)
    for n in range(200):
        target.write(f"R__v{n:03}.sql", f"DROP VIEW IF EXISTS v{n:03};\nCREATE VIEW v{n:03} AS SELECT id FROM items;\n")
    ok(target.call("sqlmigrate_up"))

    with CaptureQueriesContext(connections[target.alias]) as captured:
        result = ok(target.call("sqlmigrate_up"))

    assert result.out == "No pending migrations.\n"
    reads = [q["sql"] for q in captured.captured_queries if "schema_migrations" in q["sql"] and "SELECT *" in q["sql"]]
    assert len(reads) == 1
    assert not [q["sql"] for q in captured.captured_queries if re.search(r"(CREATE|DROP) VIEW", q["sql"], re.I)]


def test_a_deleted_repeatable_is_reported_missing_and_up_refuses(target):
    items(target)
    target.write("R__base_v.sql", BASE)
    ok(target.call("sqlmigrate_up"))
    (target.directory / "R__base_v.sql").unlink()

    validate = target.call("sqlmigrate_validate")
    up = target.call("sqlmigrate_up")

    assert validate.code == 6 and "migration R__base_v was applied but its file is missing" in validate.text
    assert up.code == 1 and "R__base_v.sql" in up.err
    assert target.query("SELECT count(*) FROM base_v") == [(0,)]


def test_plan_fake_and_sql_include_the_repeatables(target):
    items(target)
    target.write("R__base_v.sql", BASE)

    plan = ok(target.call("sqlmigrate_up", plan=True))
    script = ok(target.call("sqlmigrate_up", sql=True))
    fake = ok(target.call("sqlmigrate_up", fake=True))

    assert plan.out == f"Planned migrations:\n  {FIRST}\n  R__base_v\n"
    assert "CREATE VIEW base_v" in script.out and "DELETE FROM" in script.out
    assert "Faking R__base_v... FAKED" in fake.out
    assert target.history() == [FIRST, "R__base_v"]
    assert "base_v" not in relations(target)


def test_with_to_the_repeatables_wait(target):
    items(target)
    target.migration(SECOND, "CREATE TABLE other (id INTEGER);", "DROP TABLE other;")
    target.write("R__base_v.sql", BASE)

    ok(target.call("sqlmigrate_up", to=FIRST))

    assert target.history() == [FIRST]


pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)
PRICE_V = "DROP VIEW IF EXISTS price_v;\nCREATE VIEW price_v AS SELECT id, price FROM items;\n"
DEAR_V = "DROP VIEW IF EXISTS dear_v;\nCREATE VIEW dear_v AS SELECT id FROM price_v WHERE price > 10;\n"
WIDEN = "ALTER TABLE items ALTER COLUMN price TYPE bigint;"


@pg_only
def test_a_column_type_change_under_a_repeatables_view_names_the_directive_that_lets_it_through(target):
    items(target)
    target.write("R__price_v.sql", PRICE_V)
    target.write("R__dear_v.sql", DEAR_V)
    ok(target.call("sqlmigrate_up"))
    target.migration(SECOND, WIDEN, "")

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "cannot alter type of a column used by a view or rule" in result.err
    assert result.err.rstrip().endswith(
        f"R__price_v.sql creates price_v: add '-- sqlmigrate: recreate-repeatables' to {SECOND}.sql to drop it "
        "before the migration and create it again after, in its transaction"
    )
    assert len(result.err.strip().splitlines()) == 1


@pg_only
def test_recreate_repeatables_drops_the_views_over_views_that_use_a_changed_column_and_creates_them_again(target):
    items(target)
    target.write("R__price_v.sql", PRICE_V)
    target.write("R__dear_v.sql", DEAR_V)
    target.write("R__other.sql", "DROP VIEW IF EXISTS other_v;\nCREATE VIEW other_v AS SELECT 1 AS one;\n")
    ok(target.call("sqlmigrate_up"))
    target.migration(SECOND, WIDEN, "", header="-- sqlmigrate: recreate-repeatables\n")

    result = ok(target.call("sqlmigrate_up"))

    assert [line.split("...")[0] for line in result.out.splitlines()[:3]] == [
        f"Applying {SECOND}",
        "Applying R__price_v",
        "Applying R__dear_v",
    ]
    assert "R__other" not in result.out
    assert target.query(
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'price_v' AND column_name = 'price'"
    ) == [("bigint",)]
    assert target.query("SELECT count(*) FROM dear_v") == [(0,)]
    assert ok(target.call("sqlmigrate_status", check=True))


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_recreate_repeatables_lets_sqlite_rebuild_a_table_its_views_use(target):
    items(target)
    target.write("R__price_v.sql", PRICE_V)
    target.write("R__dear_v.sql", DEAR_V)
    ok(target.call("sqlmigrate_up"))
    rebuild = (
        "CREATE TABLE items_new (id INTEGER PRIMARY KEY, name TEXT, price REAL);\n"
        "INSERT INTO items_new SELECT * FROM items;\nDROP TABLE items;\nALTER TABLE items_new RENAME TO items;"
    )
    target.migration(SECOND, rebuild, "", header="-- sqlmigrate: recreate-repeatables\n")

    ok(target.call("sqlmigrate_up"))

    assert target.query("SELECT count(*) FROM dear_v") == [(0,)]
    assert target.query("SELECT type FROM pragma_table_info('items') WHERE name = 'price'") == [("REAL",)]


def test_verify_runs_each_new_repeatable_twice_and_passes_an_idempotent_one(target):
    items(target)
    target.write("R__base_v.sql", BASE)
    target.write("R__top_v.sql", TOP)

    result = target.call("sqlmigrate_verify", json=True)

    assert result.code == 0, result.text
    outcomes = {row["id"]: row["outcome"] for row in json.loads(result.out)}
    assert outcomes == {FIRST: "ok", "R__base_v": "ok", "R__top_v": "ok"}
    assert "schema_migrations" not in target.tables()


def test_verify_reports_a_repeatable_that_cannot_run_twice_or_gives_another_schema(target):
    items(target)
    target.write("R__plain.sql", "CREATE VIEW plain_v AS SELECT id FROM items;\n")
    target.write("R__grows.sql", "CREATE TABLE IF NOT EXISTS t1 (id INTEGER);\nALTER TABLE t1 ADD COLUMN c INTEGER;\n")

    result = target.call("sqlmigrate_verify", json=True)

    assert result.code == 9, result.text
    rows = {row["id"]: row for row in json.loads(result.out)}
    assert rows["R__plain"]["outcome"] == "failed" and "run a second time, it failed" in rows["R__plain"]["error"]
    assert rows["R__grows"]["outcome"] in ("failed", "mismatch")


def test_drift_rebuilds_the_applied_repeatables_and_leaves_a_changed_one_to_up(target):
    items(target)
    target.write("R__base_v.sql", BASE)
    target.write("R__top_v.sql", TOP)
    ok(target.call("sqlmigrate_up"))

    clean = json.loads(ok(target.call("sqlmigrate_drift", json=True)).out)
    target.write("R__base_v.sql", BASE.replace("id, name", "id, name, price"))
    changed = json.loads(ok(target.call("sqlmigrate_drift", json=True)).out)
    checked_up = target.call("sqlmigrate_up", check_drift=True)
    target.query("CREATE VIEW by_hand AS SELECT 1 AS one")
    by_hand = target.call("sqlmigrate_drift", json=True)

    assert clean["drifted"] is False and clean["applied"] == 3
    assert changed["drifted"] is False
    assert checked_up.code == 0 and "Applying R__base_v... OK" in checked_up.out
    assert by_hand.code == 14 and "by_hand" in by_hand.out


def test_the_schema_file_lists_each_repeatable_with_the_checksum_it_last_ran_with(target, settings, tmp_path):
    settings.SQLMIGRATE_SCHEMA_FILE = {target.alias: str(tmp_path / "schema.sql")}
    items(target)
    target.write("R__base_v.sql", BASE)

    ok(target.call("sqlmigrate_up"))

    text = (tmp_path / "schema.sql").read_text()
    assert text.endswith(f"-- Applied migrations\n{FIRST}\nR__base_v {rows(target)['R__base_v'][:12]}\n")
    assert "base_v" in text.split("-- Applied migrations")[0]
    assert ok(target.call("sqlmigrate_dump", check=True))


@pg_only
def test_a_tenant_set_runs_its_repeatables_in_each_tenant_and_again_when_one_changes(target, settings, tmp_path):
    fleet = make_fleet(target, settings, tmp_path)
    fleet.migration("20240101000000_accounts", "CREATE TABLE accounts (id int, name text);", "DROP TABLE accounts;")
    (fleet.directory / "R__names.sql").write_text(
        "DROP VIEW IF EXISTS names;\nCREATE VIEW names AS SELECT name FROM accounts;\n"
    )
    fleet.create("tenant_a", "tenant_b")

    first = fleet.call("sqlmigrate_up")
    status = fleet.call("sqlmigrate_status", tenants=True, check=True)
    (fleet.directory / "R__names.sql").write_text(
        "DROP VIEW IF EXISTS names;\nCREATE VIEW names AS SELECT id, name FROM accounts;\n"
    )
    behind = fleet.call("sqlmigrate_status", tenants=True, check=True)
    again = fleet.call("sqlmigrate_up")

    assert first.code == 0 and first.out.endswith("2 tenants: 2 applied.\n"), first.text
    assert fleet.history("tenant_a") == ["20240101000000_accounts", "R__names"]
    assert status.code == 0, status.text
    assert behind.code == 3, behind.text
    assert again.code == 0 and again.out.endswith("2 tenants: 2 applied.\n"), again.text
    assert target.query("SELECT count(*) FROM tenant_b.names WHERE id IS NULL") == [(0,)]


def example_files(target):
    """The worked example of docs/migration-files.md, file by file."""
    text = (Path(__file__).parent.parent / "docs" / "migration-files.md").read_text()
    example = text.split("### A worked example", 1)[1].split("### Versioned migrations", 1)[0]
    for block in re.findall(r"```sql\n(.*?)```", example, re.S):
        first, _, body = block.partition("\n")
        target.write(first.split()[1].split("/")[1], body)


@pg_only
def test_the_worked_example_of_the_docs_runs_and_a_view_whose_columns_move_is_re_created_with_the_view_over_it(
    target,
):
    example_files(target)

    first = ok(target.call("sqlmigrate_up"))
    target.write(
        "R__order_totals.sql",
        (target.directory / "R__order_totals.sql")
        .read_text()
        .replace("count(*) AS orders, sum", "count(*) AS orders, avg(total) AS average, sum"),
    )
    status = ok(target.call("sqlmigrate_status")).out
    second = ok(target.call("sqlmigrate_up"))
    target.query("INSERT INTO orders VALUES (1, 'ann', 2000, NULL)")
    target.query("UPDATE orders SET total = 2500")

    assert [line.split("...")[0].split()[1] for line in first.out.splitlines()[:-1]] == [
        "20250101000000_create_orders",
        "R__order_totals",
        "R__big_spenders",
        "R__touch_orders",
        "R__orders_touched",
    ]
    assert "Changed  | R__order_totals" in status
    assert "5 migrations: 4 applied, 0 pending, 1 changed" in status
    assert [line.split("...")[0] for line in second.out.splitlines()[:-1]] == [
        "Applying R__order_totals",
        "Applying R__big_spenders",
    ]
    assert target.query("SELECT customer, spent FROM big_spenders") == [("ann", 2500)]
    assert target.query("SELECT updated_at IS NOT NULL FROM orders") == [(True,)]


@pg_only
def test_a_dependent_the_files_do_not_show_is_found_in_the_catalog_and_re_created(target):
    items(target)
    target.write("R__a_items.sql", "DROP VIEW IF EXISTS items_v;\nCREATE VIEW items_v AS SELECT id, name FROM items;\n")
    target.write(
        "R__b_reporting.sql",  # its own view is items_v too, so its text does not show it uses public.items_v
        "CREATE SCHEMA IF NOT EXISTS reporting;\nDROP VIEW IF EXISTS reporting.items_v;\n"
        "CREATE VIEW reporting.items_v AS SELECT name FROM public.items_v;\n",
    )
    ok(target.call("sqlmigrate_up"))
    target.write("R__a_items.sql", "DROP VIEW IF EXISTS items_v;\nCREATE VIEW items_v AS SELECT name, id FROM items;\n")

    result = ok(target.call("sqlmigrate_up"))

    assert [line.split("...")[0] for line in result.out.splitlines()[:-1]] == [
        "Applying R__a_items",
        "Applying R__b_reporting",
    ]
    assert target.query("SELECT count(*) FROM reporting.items_v") == [(0,)]


def test_down_all_runs_the_repeatables_downs_first_and_refuses_one_without(target):
    items(target)
    target.write("R__base_v.sql", BASE + "-- DOWN\nDROP VIEW IF EXISTS base_v;\n")
    target.write("R__top_v.sql", TOP)
    ok(target.call("sqlmigrate_up"))

    refused = target.call("sqlmigrate_down", everything=True)
    target.write("R__top_v.sql", TOP + "-- DOWN\nDROP VIEW IF EXISTS top_v;\n")
    ok(target.call("sqlmigrate_up"))
    done = ok(target.call("sqlmigrate_down", everything=True))

    assert refused.code == 1 and "R__top_v" in refused.err
    assert [line.split("...")[0] for line in done.out.splitlines()[:-1]] == [
        "Rolling back R__top_v",
        "Rolling back R__base_v",
        f"Rolling back {FIRST}",
    ]
    assert target.history() == []
    assert not {"items", "base_v", "top_v"} & relations(target)


def test_one_rolled_back_migration_leaves_the_repeatables_alone(target):
    items(target)
    target.migration(SECOND, "CREATE TABLE other (id INTEGER);", "DROP TABLE other;")
    target.write("R__base_v.sql", BASE)
    ok(target.call("sqlmigrate_up"))

    ok(target.call("sqlmigrate_down"))

    assert target.history() == [FIRST, "R__base_v"]


def test_repair_forgets_a_deleted_repeatable_and_leaves_its_objects(target):
    items(target)
    target.write("R__base_v.sql", BASE)
    ok(target.call("sqlmigrate_up"))
    (target.directory / "R__base_v.sql").unlink()
    target.migration(SECOND, "DROP VIEW base_v;", "")

    repaired = ok(target.call("sqlmigrate_repair", "R__base_v", interactive=False))
    still_there = target.query("SELECT count(*) FROM base_v")
    ok(target.call("sqlmigrate_up"))

    assert "R__base_v: history row deleted (its file is missing)" in repaired.out
    assert still_there == [(0,)]
    assert target.history() == [FIRST, SECOND]
    assert "base_v" not in relations(target)


def parsed(name, text):
    return parse_migration(Path("/m") / name, text.encode())


def test_a_repeatable_file_is_its_definition_with_directives_first_and_an_optional_down():
    migration = parsed(
        "R__views.sql", "-- sqlmigrate: requires=R__base, auth.0001_initial\nCREATE VIEW v AS SELECT 1;\n"
    )
    with_down = parsed("R__v.sql", "CREATE VIEW v AS SELECT 1;\n-- DOWN\nDROP VIEW v;\n")
    with_up = parsed("R__v.sql", "-- UP\nCREATE VIEW v AS SELECT 1;\n")

    assert migration.repeatable and migration.id == "R__views" and migration.name == "Views"
    assert migration.after == ("R__base",) and [str(r) for r in migration.requires] == ["auth.0001_initial"]
    assert migration.up.line == 1 and "CREATE VIEW v" in migration.up.sql and not migration.reversible
    assert (with_down.up.sql, with_down.down.sql, with_down.down.line) == (
        "CREATE VIEW v AS SELECT 1;",
        "DROP VIEW v;\n",
        3,
    )
    assert (with_up.up.sql, with_up.up.line) == ("CREATE VIEW v AS SELECT 1;\n", 2)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("R__v.sql", "-- only a comment\n", "R__v.sql:1: a repeatable migration holds no SQL"),
        ("R__v.sql", "SELECT 1;\n-- sqlmigrate: no-transaction\n", "R__v.sql:2: directives go before the SQL"),
        ("R__v.sql", "-- sqlmigrate: recreate-repeatables\nSELECT 1;\n", "is for versioned migrations"),
        ("R__v.sql", "-- sqlmigrate: requires=R__a-b\nSELECT 1;\n", "bad requires value 'R__a-b'"),
        ("20240101000000_a.sql", "-- sqlmigrate: requires=R__v\n-- UP\nSELECT 1;\n", "only a repeatable migration"),
        (
            "20240101000000_a.sql",
            "-- sqlmigrate: recreate-repeatables\n-- sqlmigrate: no-transaction\n-- UP\nSELECT 1;\n",
            "recreate-repeatables' needs a transaction",
        ),
        ("R__bad-name.sql", "SELECT 1;\n", "or R__name.sql for a repeatable migration"),
    ],
)
def test_what_a_repeatable_file_may_not_be(name, text, message):
    with pytest.raises(MigrationFileError) as raised:
        parsed(name, text)

    assert message in str(raised.value)


def test_what_each_file_creates_and_the_order_derived_from_it():
    base = parsed(
        "R__z_base.sql", "DROP VIEW IF EXISTS base_v;\nCREATE OR REPLACE VIEW public.base_v AS SELECT 1 AS one;\n"
    )
    fn = parsed("R__f.sql", "CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN END $$;")
    trigger = parsed(
        "R__t.sql",
        "-- touch() is ours\nCREATE TRIGGER touched BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION touch();",
    )
    top = parsed("R__a_top.sql", "CREATE MATERIALIZED VIEW IF NOT EXISTS top_v AS SELECT * FROM base_v; -- 'x'\n")

    ordering = Ordering([base, fn, trigger, top])

    assert definitions(base) == [Definition("VIEW", "public.base_v")]
    assert definitions(trigger) == [Definition("TRIGGER", "touched", "ITEMS")]
    assert definitions(top) == [Definition("MATERIALIZED VIEW", "top_v")]
    assert [m.id for m in ordering.order] == ["R__z_base", "R__a_top", "R__f", "R__t"]
    assert ordering.dependents("R__z_base") == ["R__a_top"] and ordering.dependents("R__f") == ["R__t"]


@pytest.mark.django_db
def test_the_admin_lists_repeatables_as_applied_changed_and_new_and_shows_one(target, settings, admin_client):
    settings.SQLMIGRATE_DIRS = {target.alias: str(target.directory)}
    items(target)
    target.write("R__base_v.sql", BASE)
    target.write("R__top_v.sql", TOP)
    ok(target.call("sqlmigrate_up"))
    target.write("R__top_v.sql", TOP + "-- a comment\n")
    target.write("R__z_other.sql", "DROP VIEW IF EXISTS other_v;\nCREATE VIEW other_v AS SELECT 1 AS one;\n")

    listed = admin_client.get(list_url()).content.decode()
    changed = admin_client.get(list_url(state="changed")).content.decode()
    detail = admin_client.get(detail_url("R__top_v"))

    assert listed_rows(listed) == [
        ("new", "R__z_other"),
        ("changed", "R__top_v"),
        ("applied", "R__base_v"),
        ("applied", FIRST),
    ]
    assert "New (1)" in listed and "Changed (1)" in listed
    assert listed_rows(changed) == [("changed", "R__top_v")]
    assert detail.status_code == 200 and "CREATE VIEW top_v" in detail.content.decode()


@pg_only
def test_lint_looks_at_a_new_repeatable_with_its_file_lines(target):
    items(target)
    ok(target.call("sqlmigrate_up"))
    path = target.write(
        "R__by_name.sql", "-- Items by name.\nCREATE INDEX IF NOT EXISTS items_by_name ON items (name);\n"
    )

    result = target.call("sqlmigrate_lint", "--json")

    findings = json.loads(result.out)
    assert result.code == 10, result.text
    assert {(f["id"], f["file"], f["line"]) for f in findings} == {("R__by_name", str(path), 2)}
    assert "require-concurrent-index-creation" in {f["rule"] for f in findings}


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_a_sqlite_trigger_in_a_repeatable_is_made_again_when_it_changes(target):
    target.migration(FIRST, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);\nCREATE TABLE log (what TEXT);")
    trigger = (
        "DROP TRIGGER IF EXISTS items_logged;\n"
        "CREATE TRIGGER items_logged AFTER INSERT ON items BEGIN\n  INSERT INTO log VALUES ('{what}');\nEND;\n"
    )
    target.write("R__items_logged.sql", trigger.format(what="first"))
    ok(target.call("sqlmigrate_up"))
    target.write("R__items_logged.sql", trigger.format(what="second"))

    ok(target.call("sqlmigrate_up"))
    target.query("INSERT INTO items (name) VALUES ('a')")

    assert target.query("SELECT what FROM log") == [("second",)]
    assert target.query("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'") == [(1,)]


def test_the_sql_script_runs_a_changed_view_with_the_views_over_it_as_up_would(target):
    items(target)
    target.write("R__base_v.sql", BASE)
    target.write("R__top_v.sql", TOP)
    ok(target.call("sqlmigrate_up"))
    target.write("R__base_v.sql", BASE.replace("id, name", "name, price"))

    script = ok(target.call("sqlmigrate_up", sql=True)).out
    ran = run_script(target, script)

    assert "-- sqlmigrate_up --sql: 2 migrations" in script
    assert "-- R__base_v, R__top_v (one transaction" in script
    assert ran.returncode == 0, ran.stderr
    assert ok(target.call("sqlmigrate_status", check=True))
    assert target.query("SELECT price FROM base_v") == []


@pg_only
def test_the_sql_script_of_a_migration_with_recreate_repeatables_runs(target):
    items(target)
    target.write("R__price_v.sql", PRICE_V)
    target.write("R__dear_v.sql", DEAR_V)
    ok(target.call("sqlmigrate_up"))
    target.migration(SECOND, WIDEN, "", header="-- sqlmigrate: recreate-repeatables\n")

    script = ok(target.call("sqlmigrate_up", sql=True)).out
    ran = run_script(target, script)

    assert ran.returncode == 0, ran.stderr
    assert ok(target.call("sqlmigrate_status", check=True))


@pg_only
def test_a_function_whose_signature_changes_is_made_again_with_the_view_that_calls_it(target):
    items(target)
    target.write(
        "R__label.sql",
        "DROP FUNCTION IF EXISTS label(integer);\n"
        "CREATE FUNCTION label(n integer) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'item ' || n $$;\n",
    )
    target.write("R__labels_v.sql", "CREATE OR REPLACE VIEW labels_v AS SELECT label(id) AS label FROM items;\n")
    ok(target.call("sqlmigrate_up"))
    target.write(
        "R__label.sql",
        "DROP FUNCTION IF EXISTS label(integer);\nDROP FUNCTION IF EXISTS label(bigint);\n"
        "CREATE FUNCTION label(n bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'no. ' || n $$;\n",
    )

    result = ok(target.call("sqlmigrate_up"))
    target.query("INSERT INTO items VALUES (7, 'x', 1)")

    assert "Applying R__label... OK" in result.out and "Applying R__labels_v... OK" in result.out
    assert target.query("SELECT label FROM labels_v") == [("no. 7",)]


@pg_only
def test_two_changed_views_under_one_view_are_re_created_with_it_in_one_transaction(target):
    items(target)
    target.write("R__a.sql", "DROP VIEW IF EXISTS a_v;\nCREATE VIEW a_v AS SELECT id FROM items;\n")
    target.write("R__b.sql", "DROP VIEW IF EXISTS b_v;\nCREATE VIEW b_v AS SELECT id FROM items;\n")
    target.write("R__both.sql", "CREATE OR REPLACE VIEW both_v AS SELECT a_v.id FROM a_v JOIN b_v USING (id);\n")
    ok(target.call("sqlmigrate_up"))
    target.write("R__a.sql", "DROP VIEW IF EXISTS a_v;\nCREATE VIEW a_v AS SELECT name, id FROM items;\n")
    target.write("R__b.sql", "DROP VIEW IF EXISTS b_v;\nCREATE VIEW b_v AS SELECT price, id FROM items;\n")

    result = ok(target.call("sqlmigrate_up"))

    assert [line.split("...")[0] for line in result.out.splitlines()[:-1]] == [
        "Applying R__a",
        "Applying R__b",
        "Applying R__both",
    ]
    assert target.query("SELECT count(DISTINCT executed_at) FROM schema_migrations WHERE id LIKE 'R%%'") == [(1,)]


def test_a_unit_holds_every_changed_repeatable_connected_to_another_and_drops_the_applied_dependents():
    a = parsed("R__a.sql", "CREATE VIEW a_v AS SELECT 1 AS id;")
    b = parsed("R__b.sql", "CREATE VIEW b_v AS SELECT 1 AS id;")
    both = parsed("R__both.sql", "CREATE VIEW both_v AS SELECT * FROM a_v, b_v;")
    alone = parsed("R__c.sql", "CREATE VIEW c_v AS SELECT 1 AS id;")
    ordering = Ordering([a, b, both, alone])
    applied = {m.id: AppliedMigration(m.id, m.name, None, "old") for m in (a, b, both, alone)}

    units = plan_repeatables(ordering, applied)

    assert [[m.id for m in unit.migrations] for unit in units] == [["R__a", "R__b", "R__both"], ["R__c"]]
    assert [[m.id for m in unit.dropped] for unit in units] == [["R__both"], []]


@pytest.mark.django_db
def test_without_repeatables_the_admin_lists_no_new_or_changed_filter(target, settings, admin_client):
    settings.SQLMIGRATE_DIRS = {target.alias: str(target.directory)}
    items(target)

    listed = admin_client.get(list_url()).content.decode()

    assert "Pending (1)" in listed and "New (" not in listed and "Changed (" not in listed


@pg_only
def test_drift_of_a_fleet_leaves_a_repeatable_changed_since_it_ran_to_up(target, settings, tmp_path):
    fleet = make_fleet(target, settings, tmp_path)
    items(target)
    target.write("R__base_v.sql", BASE)
    fleet.migration("20240101000000_accounts", "CREATE TABLE accounts (id int, name text);", "DROP TABLE accounts;")
    names = "DROP VIEW IF EXISTS names;\nCREATE VIEW names AS SELECT name FROM accounts;\n"
    (fleet.directory / "R__names.sql").write_text(names)
    fleet.create("tenant_a", "tenant_b")
    ok(fleet.call("sqlmigrate_up"))
    clean = fleet.call("sqlmigrate_drift", tenants=True)
    target.write("R__base_v.sql", BASE.replace("id, name", "id, name, price"))
    (fleet.directory / "R__names.sql").write_text(names.replace("SELECT name", "SELECT id, name"))

    changed = fleet.call("sqlmigrate_drift", tenants=True)
    checked_up = fleet.call("sqlmigrate_up", check_drift=True)

    assert clean.code == 0, clean.text
    assert changed.code == 0, changed.text
    assert checked_up.code == 0, checked_up.text
    assert target.query("SELECT count(*) FROM tenant_a.names WHERE id IS NULL") == [(0,)]
    assert target.query("SELECT price FROM base_v") == []


def test_a_repeatables_claim_expects_its_row_as_the_plan_saw_it_and_never_takes_it_for_the_newest_row(target):
    items(target)
    target.write("R__base_v.sql", BASE)
    ok(target.call("sqlmigrate_up"))
    runner = MigrationRunner(target.alias, target.directory)
    runner.executor.expect(runner.history.read())
    changed = parsed("R__base_v.sql", BASE.replace("id, name", "id, name, price"))
    seen = rows(target)["R__base_v"]

    def holds(*migrations, applying=True):
        sides = [
            runner.executor.applying(m) if applying else Side(m, Action.ROLLED_BACK, m.down, "-") for m in migrations
        ]
        premise = runner.history.premise([runner.executor._expected(side) for side in sides], runner.executor._applied)
        return target.query(f"SELECT CASE WHEN {premise} THEN 1 ELSE 0 END") == [(1,)]

    assert holds(changed)  # its row there with the checksum the plan saw; the newest versioned row FIRST, not R__base_v
    assert holds(changed, applying=False)
    assert not holds(parsed(f"{SECOND}.sql", "-- UP\nSELECT 1;\n-- DOWN\nSELECT 1;\n"), applying=False)
    target.query(f"UPDATE schema_migrations SET checksum = '{changed.checksum}' WHERE id = 'R__base_v'")
    assert not holds(changed)  # another runner re-applied it meanwhile: skipped, and the run plans again
    target.query(f"UPDATE schema_migrations SET checksum = '{seen}' WHERE id = 'R__base_v'")
    target.query(f"INSERT INTO schema_migrations (id, name, checksum) VALUES ('{SECOND}', 'x', 'y')")
    assert not holds(changed)  # the versioned history moved
    target.query(f"DELETE FROM schema_migrations WHERE id IN ('{SECOND}', 'R__base_v')")
    assert not holds(changed)  # its row went (down --all, repair by another runner)
    runner.executor.expect(runner.history.read())
    assert holds(changed)  # a new one expects none
    target.query("INSERT INTO schema_migrations (id, name, checksum) VALUES ('R__base_v', 'x', 'y')")
    assert not holds(changed)
    runner.executor.start_run()  # nothing read: a repeatable expects only not to be there with this file's checksum
    assert holds(changed)

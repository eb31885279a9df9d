"""The sqlmigrate_drift command: its --sql script (run by hand, it brings the schema back, and leaves
to a human what would lose data), --json, --keep, and its exit codes."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import psycopg
import pytest
from django.db import connections

from sqlmigrate_app.management.base import EXIT_DRIFT

from .support.target import Target, register_alias, unregister_alias

ORDERS = "20240101000001_create_orders"

# What a person adds or changes by hand that the script undoes: an index, a view, a trigger and
# its function; on PostgreSQL also an edited function and a constraint with its index.
BY_HAND = {
    "postgresql": [
        "CREATE INDEX orders_total_idx ON orders (total)",
        "CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100",
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch()",
        "ALTER TABLE orders ADD CONSTRAINT orders_note_key UNIQUE (note)",
        "CREATE OR REPLACE FUNCTION tax(amount integer) RETURNS integer LANGUAGE sql AS $$ SELECT amount / 4 $$",
        "CREATE TYPE mood AS ENUM ('ok')",
    ],
    "sqlite": [
        "CREATE INDEX orders_total_idx ON orders (total)",
        "CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100",
        "CREATE TRIGGER orders_touch AFTER UPDATE ON orders BEGIN SELECT 1; END",
    ],
}
TAX = "CREATE FUNCTION tax(amount integer) RETURNS integer LANGUAGE sql AS $$ SELECT amount / 5 $$;"


def applied(target: Target) -> None:
    up = "CREATE TABLE orders (id integer PRIMARY KEY, total integer DEFAULT 0, note text);"
    target.migration(ORDERS, up + ("\n" + TAX if target.vendor == "postgresql" else ""))
    assert target.call("sqlmigrate_up").code == 0


def by_hand(target: Target, *statements: str) -> None:
    for statement in statements:
        target.query(statement)
    connections[target.alias].close()


def run_by_hand(target: Target, script: str) -> None:
    """Run the script as a person would, outside sqlmigrate."""
    connections[target.alias].close()
    if target.vendor == "postgresql":
        with psycopg.connect(target.url, autocommit=True) as conn:
            conn.execute(script.encode())
    else:
        with sqlite3.connect(target.url.removeprefix("sqlite:///"), isolation_level=None) as lite:
            lite.executescript(script)
        lite.close()


def test_the_sql_script_undoes_what_was_added_by_hand_and_leaves_a_table_to_you(target):
    applied(target)
    by_hand(target, *BY_HAND[target.vendor], "CREATE TABLE audit (id integer)")

    script = target.call("sqlmigrate_drift", sql=True)
    run_by_hand(target, script.out)
    after = target.call("sqlmigrate_drift", json=True)

    assert script.code == EXIT_DRIFT, script.text
    statements = script.out.split("\nBEGIN;\n")[1].split("\nCOMMIT;\n")[0]
    assert "CASCADE" not in statements
    assert statements.count(";\n") + 1 == len(BY_HAND[target.vendor])  # a constraint's index goes with it
    table = "table public.audit" if target.vendor == "postgresql" else "table audit"
    assert f"\n-- Left to you:\n-- {table}:\n--   only in the live database: drop it by hand" in script.out
    assert after.code == EXIT_DRIFT
    assert [change["object"] for change in json.loads(after.out)["changes"]] == [table]


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_the_sql_script_drops_an_index_added_by_hand_and_puts_a_function_back(target):
    applied(target)
    by_hand(target, *BY_HAND["postgresql"][:1], BY_HAND["postgresql"][5])

    script = target.call("sqlmigrate_drift", sql=True).out

    assert "\nDROP INDEX public.orders_total_idx;\n" in script
    assert "\nCREATE OR REPLACE FUNCTION public.tax(amount integer)\n" in script
    assert "SELECT amount / 5" in script and "SELECT amount / 4" not in script.split("-- Left to you")[0]


def test_a_column_added_by_hand_is_left_to_you(target):
    applied(target)
    by_hand(target, "ALTER TABLE orders ADD COLUMN coupon text")

    script = target.call("sqlmigrate_drift", sql=True).out

    assert "BEGIN;" not in script
    if target.vendor == "postgresql":
        assert (
            "--   column coupon: only in the live database: drop it by hand if it is unwanted (its data goes)" in script
        )
    else:
        assert "--   differs from the rebuild: alter it by hand to the lines marked -" in script
    assert "--     +     coupon text" in script or "--     +     column coupon text" in script


def test_text_read_from_the_database_cannot_end_a_comment_of_the_script(target):
    applied(target)
    by_hand(target, 'CREATE TABLE audit ("x\rDROP TABLE orders; --" integer)')

    script = target.call("sqlmigrate_drift", sql=True).out
    run_by_hand(target, script)

    assert "\r" not in script
    assert ("x\\rDROP TABLE orders" if target.vendor == "postgresql" else "x DROP TABLE orders") in script
    assert "orders" in target.tables()


def test_with_no_drift_the_script_says_there_is_nothing_to_do(target):
    applied(target)

    result = target.call("sqlmigrate_drift", sql=True)

    assert result.code == 0, result.text
    assert result.out.endswith("\n-- Nothing to do: it has that schema.\n")


def test_json_and_sql_are_one_or_the_other(target):
    applied(target)

    result = target.manage("sqlmigrate_drift", "--json", "--sql")

    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr


def test_json_is_one_object_and_stdout_holds_nothing_else(target):
    applied(target)
    by_hand(target, "CREATE TABLE audit (id integer)")

    result = target.manage("sqlmigrate_drift", "--json")

    assert result.returncode == EXIT_DRIFT
    found = json.loads(result.stdout)
    assert set(found) == {"database", "applied", "drifted", "problems", "changes", "ignored", "throwaway"}
    assert (found["database"], found["applied"], found["drifted"]) == ("default", 1, True)
    assert [change["change"] for change in found["changes"]] == ["added"]


def test_keep_keeps_the_rebuild_and_names_it(target, tmp_path, monkeypatch):
    applied(target)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    result = target.call("sqlmigrate_drift", keep=True)

    assert result.code == 0, result.text
    [line] = [line for line in result.err.splitlines() if line.startswith("Kept the throwaway database ")]
    name = line.removeprefix("Kept the throwaway database ").removesuffix(".")
    if target.vendor == "sqlite":
        assert Path(name).is_file()
        shutil.rmtree(Path(name).parent)
    else:
        with psycopg.connect(target.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            assert admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            admin.execute(f'DROP DATABASE "{name}"')


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
@pytest.mark.parametrize("change", ["SET DEFAULT 1", "DROP DEFAULT"])
def test_a_default_changed_by_hand_is_put_back(target, change):
    applied(target)
    by_hand(target, f"ALTER TABLE orders ALTER COLUMN total {change}")

    script = target.call("sqlmigrate_drift", sql=True)
    run_by_hand(target, script.out)
    after = target.call("sqlmigrate_drift")

    assert "\nALTER TABLE public.orders ALTER COLUMN total SET DEFAULT 0;\n" in script.out
    assert "Left to you" not in script.out
    assert after.code == 0, after.text


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_a_role_that_may_only_read_compares_with_a_rebuild_made_elsewhere(target):
    """Production's role may not create databases: the rebuild goes to another server (here the
    same server through a role that may), production's is only read."""
    applied(target)
    by_hand(target, "CREATE TABLE audit (id integer)")
    server = target.url.rsplit("/", 1)[0] + "/postgres"
    role = target.url.rsplit("/", 1)[1] + "_reader"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN NOCREATEDB")
        admin.execute(f"ALTER ROLE {role} SET default_transaction_read_only = on")
    with psycopg.connect(target.url, autocommit=True) as conn:
        conn.execute(f"GRANT SELECT ON schema_migrations TO {role}")
    register_alias("reader", target.url.replace("postgres@", f"{role}@"))
    register_alias("rebuild", target.url)
    try:
        reader = Target("postgresql", target.url, target.directory, alias="reader")
        refused = reader.call("sqlmigrate_drift")
        result = reader.call("sqlmigrate_drift", rebuild_on="rebuild")
    finally:
        unregister_alias("reader")
        unregister_alias("rebuild")
        with psycopg.connect(target.url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")  # its grant
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP ROLE {role}")

    assert refused.code == 1 and "cannot create the throwaway database" in refused.err
    assert result.code == EXIT_DRIFT, result.text
    assert "only in the live database (added by hand): table public.audit" in result.out


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_the_rebuild_is_made_by_the_same_database(target, tmp_path):
    applied(target)
    register_alias("rebuild", f"sqlite:///{tmp_path / 'rebuild.sqlite3'}")
    try:
        result = target.call("sqlmigrate_drift", rebuild_on="rebuild")
    finally:
        unregister_alias("rebuild")

    assert result.code == 1
    assert result.err.strip() == (
        "--rebuild-on rebuild: database 'rebuild' is SQLite and 'target' is PostgreSQL: rebuild on the "
        "same database as the one compared"
    )


def test_names_read_from_the_database_are_printed_escaped(target):
    applied(target)
    by_hand(target, 'CREATE TABLE "audit\x1b[31m" (id integer)')

    result = target.call("sqlmigrate_drift")

    assert result.code == EXIT_DRIFT
    assert "\x1b" not in result.out + result.err
    assert "audit\\x1b[31m" in result.out and "audit\\x1b[31m" in result.err

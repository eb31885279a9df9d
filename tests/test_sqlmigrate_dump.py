"""sqlmigrate_dump: the schema file, identical from two databases built by the same migrations,
rewritten by up and down when SQLMIGRATE_SCHEMA_FILE is set, and --check for CI."""

from __future__ import annotations

from sqlmigrate_app.management.base import EXIT_SCHEMA_FILE

from .support.migrations import demo_migrations
from .support.twins import twin


def test_two_databases_built_by_the_same_migrations_dump_identical_files(target, tmp_path):
    demo_migrations(target)
    assert target.call("sqlmigrate_up").code == 0
    with twin(target) as other:
        assert other.call("sqlmigrate_up").code == 0

        first = target.call("sqlmigrate_dump", output=str(tmp_path / "first.txt"))
        second = other.call("sqlmigrate_dump", output=str(tmp_path / "second.txt"))

    assert first.code == second.code == 0, first.text + second.text
    text = (tmp_path / "first.txt").read_bytes()
    assert text == (tmp_path / "second.txt").read_bytes()
    assert b"client_registrations" in text
    assert text.endswith(
        b"-- Applied migrations\n" + b"".join(p.stem.encode() + b"\n" for p in sorted(target.directory.glob("*.sql")))
    )


def test_check_fails_after_a_new_migration_until_dumped(target, tmp_path):
    schema = tmp_path / "schema.txt"
    target.migration("20240101000001_orders", "CREATE TABLE orders (id integer);", "DROP TABLE orders;")
    assert target.call("sqlmigrate_up").code == 0
    assert target.call("sqlmigrate_dump", output=str(schema)).code == 0
    fresh = target.call("sqlmigrate_dump", "--check", output=str(schema))
    target.migration("20240101000002_notes", "CREATE TABLE notes (body text);", "DROP TABLE notes;")
    assert target.call("sqlmigrate_up").code == 0

    stale = target.call("sqlmigrate_dump", "--check", output=str(schema))
    dumped = target.call("sqlmigrate_dump", output=str(schema))
    checked = target.call("sqlmigrate_dump", "--check", output=str(schema))

    assert fresh.code == 0, fresh.text
    assert stale.code == EXIT_SCHEMA_FILE == 11
    assert f"{schema} differs from the database: run sqlmigrate_dump and commit it" in stale.err
    assert "+table " in stale.err and "notes" in stale.err
    assert "+20240101000002_notes" in stale.err
    assert dumped.code == 0 and f"Wrote {schema}." in dumped.out
    assert checked.code == 0 and "matches the database" in checked.out


def test_up_and_down_rewrite_the_schema_file_when_the_setting_is_set(target, tmp_path, settings):
    schema = tmp_path / "schema" / "db.txt"
    settings.SQLMIGRATE_SCHEMA_FILE = {target.alias: schema}
    target.migration("20240101000001_orders", "CREATE TABLE orders (id integer);", "DROP TABLE orders;")

    up = target.call("sqlmigrate_up")
    after_up = schema.read_text()
    down = target.call("sqlmigrate_down")
    after_down = schema.read_text()
    plan = target.call("sqlmigrate_up", "--plan")

    assert f"Wrote the schema to {schema}." in up.out
    assert "orders" in after_up and after_up.endswith("-- Applied migrations\n20240101000001_orders\n")
    assert f"Wrote the schema to {schema}." in down.out
    assert "orders" not in after_down and after_down.endswith("-- Applied migrations\n")
    assert "Wrote" not in plan.out and schema.read_text() == after_down
    assert target.call("sqlmigrate_dump", "--check").code == 0


def test_a_path_setting_is_the_default_databases_only(target, tmp_path, settings):
    settings.SQLMIGRATE_SCHEMA_FILE = tmp_path / "schema.txt"
    target.migration("20240101000001_orders", "CREATE TABLE orders (id integer);", "DROP TABLE orders;")

    up = target.call("sqlmigrate_up")
    check = target.call("sqlmigrate_dump", "--check")

    assert "Wrote" not in up.out and not (tmp_path / "schema.txt").exists()
    assert check.code == 1 and "set SQLMIGRATE_SCHEMA_FILE or give --output FILE" in check.err


def test_without_a_file_the_schema_goes_to_stdout(target):
    target.migration("20240101000001_orders", "CREATE TABLE orders (id integer);", "DROP TABLE orders;")
    assert target.call("sqlmigrate_up").code == 0

    default = target.call("sqlmigrate_dump")
    dash = target.call("sqlmigrate_dump", output="-")

    assert default.code == dash.code == 0
    assert default.out == dash.out
    assert default.out.startswith("-- The database schema as the migrations leave it")
    assert "orders" in default.out and default.out.endswith("20240101000001_orders\n")

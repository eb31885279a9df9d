"""Migrations several test modules write: three small ones, a big section, the demo set, and the
session settings a migration could leak into the next."""

from __future__ import annotations

import shutil

from .target import ROOT, Target, ok

FIRST, SECOND, THIRD = "20240101000000_create_a", "20240102000000_create_b", "20240103000000_create_c"


def three(target: Target, down_for_second: str = "DROP TABLE b;") -> None:
    """Three migrations, each creating one table (a, b, c); reversible, unless ``down_for_second``
    is empty."""
    for migration_id, table in ((FIRST, "a"), (SECOND, "b"), (THIRD, "c")):
        down = down_for_second if migration_id == SECOND else f"DROP TABLE {table};"
        target.migration(migration_id, f"CREATE TABLE {table} (id INTEGER PRIMARY KEY);", down)


PADDING = "x" * 60


def big_section(bad_line: int | None = None, statements: int = 20_000) -> str:
    """Over a megabyte of INSERTs, optionally one of them broken."""
    lines = [f"INSERT INTO big VALUES ({i}, '{PADDING}');" for i in range(statements)]
    if bad_line is not None:
        lines[bad_line] = lines[bad_line].replace("INSERT INTO", "INSERT INTOO")
    return "CREATE TABLE big (id integer PRIMARY KEY, pad text);\n" + "\n".join(lines) + "\n"


# (what migration 1 does to the session, plain SQL in migration 2 that fails if it leaked)
LEAKS = {
    "pg_dump's set_config": (
        "SELECT pg_catalog.set_config('search_path', '', false);",
        "CREATE TABLE second (id integer);",  # no schema has been selected to create in
    ),
    "SET search_path": ("SET search_path = nowhere;", "CREATE TABLE second (id integer);"),
    "SET statement_timeout": (
        "SET statement_timeout = '10ms';",
        "CREATE TABLE second (id integer);\nSELECT pg_sleep(0.2);",
    ),
    "SET TIME ZONE": (
        "SET TIME ZONE 'America/New_York';",
        "CREATE TABLE second (id integer);\n"
        "SELECT 1 / (current_setting('TimeZone') = 'UTC')::integer;",  # division by zero when leaked
    ),
    "SET inside a DO block": (
        "DO $$ BEGIN SET search_path = nowhere; END $$;",
        "CREATE TABLE second (id integer);",
    ),
    "RESET of the app's own setting": (
        "RESET TimeZone;",  # the server's default is not the UTC Django chose for this session
        "CREATE TABLE second (id integer);\nSELECT 1 / (current_setting('TimeZone') = 'UTC')::integer;",
    ),
}


PG_EXTRAS = (
    "CREATE TYPE status AS ENUM ('new', 'paid');\n"
    "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\n"
    "CREATE TABLE invoices (id bigserial PRIMARY KEY, state status NOT NULL DEFAULT 'new');\n"
    "CREATE TRIGGER invoices_touch BEFORE UPDATE ON invoices FOR EACH ROW EXECUTE FUNCTION touch();\n"
    "CREATE VIEW unpaid AS SELECT id FROM invoices WHERE state = 'new';\n"
    "COMMENT ON TABLE invoices IS 'one per order';"
)


def demo_migrations(target: Target) -> None:
    for path in sorted((ROOT / "migrations_sql").glob("*.sql")):
        shutil.copy(path, target.directory)
    if target.vendor == "postgresql":
        target.migration(
            "20241201000006_invoices", PG_EXTRAS, "DROP VIEW unpaid; DROP TABLE invoices; DROP TYPE status;"
        )


def states_fixture(target):
    """One migration in each state: applied, modified, missing, pending."""
    three(target)
    target.migration("20231231000000_gone", "CREATE TABLE g (id INTEGER);", "DROP TABLE g;")
    ok(target.call("sqlmigrate_up", to=SECOND))
    (target.directory / "20231231000000_gone.sql").unlink()
    second = target.directory / f"{SECOND}.sql"
    second.write_text(second.read_text() + "-- edited\n")

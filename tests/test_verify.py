"""sqlmigrate_verify: UP, DOWN and UP again in a throwaway database, the schema compared at each
step; what a wrong DOWN looks like, and the target database left as it was."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.db import connections

from sqlmigrate_app.backends import backend_for
from sqlmigrate_app.management.base import EXIT_REHEARSAL
from sqlmigrate_app.throwaway import Creator

from .support.processes import Output, spawn, wait_until
from .support.target import ROOT, Target, register_alias, unregister_alias

pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)
sqlite_only = pytest.mark.parametrize("target", ["sqlite"], indirect=True)

ORDERS = "20240101000001_create_orders"


def orders(target: Target) -> None:
    target.migration(
        ORDERS, "CREATE TABLE orders (id bigint PRIMARY KEY, total integer DEFAULT 0);", "DROP TABLE orders;"
    )


def verify(target: Target, *args: str, **options: object):
    return target.call("sqlmigrate_verify", *args, **options)


def server_of(target: Target) -> str:
    return target.url.rsplit("/", 1)[0] + "/postgres"


def database_exists(target: Target, name: str) -> bool:
    with psycopg.connect(server_of(target), autocommit=True) as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def drop_database(target: Target, name: str) -> None:
    with psycopg.connect(server_of(target), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def own_temporary_directory(target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SQLite's throwaway directories in this test's own temporary directory (in this process
    and the ones it starts), so that it sees only its own leftovers."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    target.env["TMPDIR"] = str(directory)
    return directory


def throwaway_exists(target: Target, name: str) -> bool:
    if target.vendor == "sqlite":
        return Path(name).parent.exists()
    return database_exists(target, name)


def started_in(out: Output) -> str:
    """The throwaway database a running verify said it works in."""
    out.wait_for("...\n")
    return "".join(out.chunks).split("in the throwaway database ")[1].split("...\n")[0]


def backends_on(target: Target, database: str, query: str = "%") -> list[tuple[int, str, str | None]]:
    """The sessions connected to ``database``: pid, state and what they wait for."""
    with psycopg.connect(server_of(target), autocommit=True) as admin:
        return admin.execute(
            "SELECT pid, state, wait_event_type FROM pg_stat_activity WHERE datname = %s AND query LIKE %s"
            " AND pid <> pg_backend_pid()",
            [database, query],
        ).fetchall()


def test_the_demo_migrations_round_trip(target):
    for path in sorted((ROOT / "migrations_sql").glob("*.sql")):
        shutil.copy(path, target.directory)

    result = verify(target)

    assert result.code == 0, result.text
    assert result.out.count(": OK") == 5
    assert "All round trips match (5 migrations)." in result.out


@pg_only
def test_a_down_that_drops_the_table_but_not_the_function_leaves_it_behind(target):
    target.migration(
        "20240101000001_slugs",
        "CREATE TABLE pages (id bigint PRIMARY KEY, title text);\n"
        "CREATE FUNCTION slugify(title text) RETURNS text LANGUAGE sql IMMUTABLE\n"
        "    AS $$ SELECT lower(replace(title, ' ', '-')) $$;",
        "DROP TABLE pages;",
    )

    result = verify(target)

    assert result.code == EXIT_REHEARSAL == 9, result.text
    assert "20240101000001_slugs: FAILED" in result.out
    assert "DOWN left something behind" in result.out
    assert "added: function public.slugify(title text)" in result.out
    assert "UP is not repeatable after DOWN: it failed" in result.out  # the function is still there
    assert "round trip failed for 1 of 1 migration: 20240101000001_slugs" in result.err


@pg_only
def test_a_down_that_does_not_restore_a_column_default_is_caught(target):
    orders(target)
    target.migration(
        "20240101000002_default_total",
        "ALTER TABLE orders ALTER COLUMN total SET DEFAULT 100;",
        "ALTER TABLE orders ALTER COLUMN total DROP DEFAULT;",
    )

    result = verify(target)

    assert result.code == EXIT_REHEARSAL, result.text
    assert "20240101000001_create_orders: OK" in result.out
    assert "changed: table public.orders" in result.out
    assert "-     column total integer default 0" in result.out
    assert "+     column total integer" in result.out


@pg_only
def test_a_down_that_leaves_an_enum_value_behind_is_caught(target):
    target.migration("20240101000001_mood", "CREATE TYPE mood AS ENUM ('sad', 'happy');", "DROP TYPE mood;")
    target.migration(
        "20240101000002_excited",
        "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'excited';\nCREATE TABLE moods (m mood);",
        "DROP TABLE moods;  -- PostgreSQL cannot drop an enum value",
    )

    result = verify(target, "--json")

    assert result.code == EXIT_REHEARSAL
    first, second = json.loads(result.out)
    assert first["outcome"] == "ok"
    assert second["outcome"] == "mismatch"
    [mismatch] = second["mismatches"]
    assert mismatch["step"] == "down"
    [change] = mismatch["changes"]
    assert change["object"] == "type public.mood"
    assert change["diff"] == [
        "- type public.mood: enum ('sad', 'happy')",
        "+ type public.mood: enum ('sad', 'happy', 'excited')",
    ]


@pg_only
def test_an_up_that_cannot_run_again_after_its_down_is_caught(target):
    target.migration(
        "20240101000001_invoices",
        "CREATE SEQUENCE invoice_numbers;\nCREATE TABLE invoices (number bigint DEFAULT nextval('invoice_numbers'));",
        "DROP TABLE invoices;",  # forgets the sequence
    )
    target.migration("20240101000002_later", "CREATE TABLE later (id integer);", "DROP TABLE later;")

    result = verify(target)

    assert result.code == EXIT_REHEARSAL, result.text
    assert "20240101000001_invoices: FAILED" in result.out
    assert "added: sequence public.invoice_numbers" in result.out
    assert "UP is not repeatable after DOWN: it failed: " in result.out
    assert 'relation "invoice_numbers" already exists' in result.out
    assert "20240101000002_later: OK" in result.out  # the failed UP was rolled back: the run goes on


@pg_only
def test_an_up_that_gives_another_schema_the_second_time_is_caught(target):
    target.migration("20240101000001_settings", "CREATE TABLE settings (k text);", "DROP TABLE settings;")
    target.migration(
        "20240101000002_first_run",
        "INSERT INTO settings VALUES ('seen');\n"
        "DO $$ BEGIN\n"
        "    IF (SELECT count(*) FROM settings) = 1 THEN CREATE TABLE first_time (id integer);\n"
        "    ELSE CREATE TABLE again (id integer); END IF;\n"
        "END $$;",
        "DROP TABLE IF EXISTS first_time;\nDROP TABLE IF EXISTS again;",  # the row stays
    )

    result = verify(target)

    assert result.code == EXIT_REHEARSAL, result.text
    assert "DOWN left something behind" not in result.out
    assert "UP is not repeatable after DOWN" in result.out
    assert "removed: table public.first_time" in result.out
    assert "added: table public.again" in result.out


def test_after_a_failed_step_the_run_goes_on_and_reports_every_migration(target):
    orders(target)
    target.migration("20240101000002_bad_down", "CREATE TABLE notes (id integer);", "DROP TABLE no_such_table;")
    target.migration("20240101000003_later", "CREATE TABLE later (id integer);", "DROP TABLE later;")
    target.migration("20240101000004_bad_up", "CREATE TABLE tags (id integer);\nINSERT INTO nowhere VALUES (1);")
    target.migration("20240101000005_uses_tags", "CREATE INDEX tags_id ON tags (id);", "DROP INDEX tags_id;")
    target.migration("20240101000006_last", "CREATE TABLE last (id integer);", "DROP TABLE last;")

    result = verify(target, "--all", "--json")

    assert result.code == EXIT_REHEARSAL, result.text
    rows = {row["id"]: row for row in json.loads(result.out)}
    assert {key: row["outcome"] for key, row in rows.items()} == {
        ORDERS: "ok",
        "20240101000002_bad_down": "failed",  # rolled back: still applied, so the run goes on from there
        "20240101000003_later": "ok",
        "20240101000004_bad_up": "failed",  # rolled back: not applied, and left out from then on
        "20240101000005_uses_tags": "failed",
        "20240101000006_last": "ok",
    }
    bad_down = rows["20240101000002_bad_down"]["error"]
    assert bad_down.startswith(f"DOWN failed: {target.directory / '20240101000002_bad_down.sql'}:4: ")
    assert rows["20240101000004_bad_up"]["error"].startswith(
        f"UP failed: {target.directory / '20240101000004_bad_up.sql'}:3: "
    )
    uses_tags = rows["20240101000005_uses_tags"]["error"]
    assert uses_tags.startswith(f"UP failed: {target.directory / '20240101000005_uses_tags.sql'}:2: ")
    assert uses_tags.endswith("(20240101000004_bad_up is not applied: its UP failed)")
    assert result.err.endswith(
        "round trip failed for 3 of 6 migrations: 20240101000002_bad_down, 20240101000004_bad_up, "
        "20240101000005_uses_tags"
    )


def test_in_text_every_failure_is_shown_with_its_file_and_line(target):
    target.migration("20240101000001_bad_down", "CREATE TABLE notes (id integer);", "DROP TABLE no_such_table;")
    target.migration("20240101000002_bad_up", "INSERT INTO no_such_table VALUES (1);", "SELECT 1;")
    target.migration("20240101000003_later", "CREATE TABLE later (id integer);", "DROP TABLE later;")

    result = verify(target)

    assert result.code == EXIT_REHEARSAL
    assert "20240101000001_bad_down: FAILED" in result.out
    assert f"DOWN failed: {target.directory / '20240101000001_bad_down.sql'}:4: " in result.out
    assert "20240101000002_bad_up: FAILED" in result.out
    assert f"UP failed: {target.directory / '20240101000002_bad_up.sql'}:2: " in result.out
    assert "20240101000003_later: OK" in result.out


def test_a_no_transaction_step_that_failed_part_way_leaves_the_rest_not_verified(target):
    target.migration(
        "20240101000001_half",
        "CREATE TABLE half (id integer);\nINSERT INTO nowhere VALUES (1);",
        "DROP TABLE half;",
        header="-- sqlmigrate: no-transaction\n",
    )
    target.migration("20240101000002_later", "CREATE TABLE later (id integer);", "DROP TABLE later;")

    result = verify(target, "--json")

    assert result.code == EXIT_REHEARSAL
    half, later = json.loads(result.out)
    assert half["outcome"] == "failed" and "1 of 2 statements had already run" in half["error"]
    assert later["outcome"] == "not_verified"
    assert later["error"] == (
        "not verified: 20240101000001_half failed part way (no-transaction), so what is applied is not known"
    )


def test_an_earlier_migration_that_needs_one_whose_up_failed_leaves_the_rest_not_verified(target):
    target.migration("20240101000001_bad_up", "CREATE TABLE tags (id integer);\nINSERT INTO nowhere VALUES (1);")
    target.migration("20240101000002_uses_tags", "CREATE INDEX tags_id ON tags (id);", "DROP INDEX tags_id;")
    target.migration("20240101000003_notes", "CREATE TABLE notes (id integer);", "DROP TABLE notes;")

    result = verify(target, "20240101000001_bad_up", "20240101000003_notes", "--json")

    assert result.code == EXIT_REHEARSAL, result.text
    bad_up, notes = json.loads(result.out)
    assert bad_up["outcome"] == "failed"
    assert notes["outcome"] == "not_verified"
    assert f"{target.directory / '20240101000002_uses_tags.sql'}:2: " in notes["error"]
    assert (
        "(while applying 1 earlier migration to the throwaway database, before 20240101000003_notes)"
        in (notes["error"])
    )
    assert notes["error"].endswith("; 20240101000001_bad_up is not applied: its UP failed")


def test_a_statement_up_refuses_fails_the_up_of_any_migration_under_test(target):
    orders(target)
    target.migration(
        "20240101000002_commits", "CREATE TABLE b (id integer);\nCOMMIT;\nCREATE TABLE c (id integer);", "DROP TABLE b;"
    )

    result = verify(target, "--json")

    assert result.code == EXIT_REHEARSAL
    first, commits = json.loads(result.out)
    assert first["outcome"] == "ok"
    assert commits["outcome"] == "failed"
    assert commits["error"].startswith(f"UP failed: {target.directory / '20240101000002_commits.sql'}:3: ")
    assert commits["mismatches"] == []  # nothing of it ran


def test_an_earlier_migration_that_fails_is_an_error(target):
    target.migration("20240101000001_broken", "INSERT INTO no_such_table VALUES (1);", "SELECT 1;")
    target.migration("20240101000002_notes", "CREATE TABLE notes (id integer);", "DROP TABLE notes;")

    result = verify(target, "20240101000002_notes")

    assert result.code == 1
    assert "20240101000001_broken.sql" in result.err
    assert "while applying 1 earlier migration to the throwaway database, before 20240101000002_notes" in result.err


def test_a_long_difference_is_cut_unless_verbose(target):
    columns = ",\n".join(f"    c{i} integer" for i in range(40))
    target.migration("20240101000001_wide", f"CREATE TABLE wide (\n{columns}\n);", "SELECT 1;")

    short = verify(target)
    verbose = verify(target, verbosity=2)

    assert short.code == verbose.code == EXIT_REHEARSAL
    assert "more lines; -v 2 shows them)" in short.out
    assert "more lines" not in verbose.out and "c39 integer" in verbose.out


def test_a_down_that_forgets_an_index_is_caught(target):
    orders(target)
    target.migration(
        "20240101000002_index_totals",
        "CREATE INDEX orders_total ON orders (total);\nALTER TABLE orders ADD COLUMN note TEXT;",
        "ALTER TABLE orders DROP COLUMN note;",
    )

    result = verify(target)

    assert result.code == EXIT_REHEARSAL, result.text
    if target.vendor == "sqlite":
        assert "added: index orders_total on orders" in result.out
    else:
        assert "changed: table public.orders" in result.out
        assert "+     index orders_total: CREATE INDEX orders_total ON public.orders USING btree (total)" in result.out


def test_an_irreversible_migration_is_applied_and_reported_and_the_next_one_verified(target):
    orders(target)
    target.migration("20240101000002_backfill", "UPDATE orders SET total = 0;")
    target.migration("20240101000003_notes", "CREATE TABLE notes (id integer);", "DROP TABLE notes;")

    result = verify(target, "--json")

    assert result.code == 0, result.text
    outcomes = [(row["id"], row["outcome"]) for row in json.loads(result.out)]
    assert outcomes == [
        (ORDERS, "ok"),
        ("20240101000002_backfill", "irreversible"),
        ("20240101000003_notes", "ok"),
    ]


def test_a_no_transaction_migration_is_verified_too(target):
    orders(target)
    concurrently = "CONCURRENTLY " if target.vendor == "postgresql" else ""
    target.migration(
        "20240101000002_index",
        f"CREATE INDEX {concurrently}orders_total ON orders (total);",
        f"DROP INDEX {concurrently}orders_total;",
        header="-- sqlmigrate: no-transaction\n",
    )

    result = verify(target, "--json")

    assert result.code == 0, result.text
    assert [row["transactional"] for row in json.loads(result.out)] == [True, False]


def test_by_default_the_migrations_pending_on_the_target_are_verified(target):
    orders(target)
    target.migration("20240101000002_notes", "CREATE TABLE notes (id integer);", "DROP TABLE notes;")
    assert target.call("sqlmigrate_up").code == 0
    target.migration("20240101000003_tags", "CREATE TABLE tags (id integer);", "DROP TABLE tags;")

    result = verify(target)

    assert result.code == 0, result.text
    assert "Verifying 1 migration in the throwaway database" in result.out
    assert "applying 2 earlier migrations first" in result.out
    assert "20240101000003_tags: OK" in result.out
    assert ORDERS not in result.out


def test_nothing_pending_means_nothing_to_verify(target):
    orders(target)
    assert target.call("sqlmigrate_up").code == 0

    result = verify(target)

    assert result.code == 0
    assert "No migrations to verify." in result.out


def test_named_migrations_and_all(target):
    orders(target)
    target.migration("20240101000002_notes", "CREATE TABLE notes (id integer);", "DROP TABLE notes;")
    target.migration("20240101000003_tags", "CREATE TABLE tags (id integer);", "DROP TABLE tags;")
    assert target.call("sqlmigrate_up").code == 0

    named = verify(target, str(target.directory / "20240101000002_notes.sql"), "20240101000003", "--json")
    every = verify(target, "--all", "--json")
    unknown = verify(target, "20240101000009_nope")
    both = verify(target, "20240101000003_tags", "--all")

    assert [row["id"] for row in json.loads(named.out)] == ["20240101000002_notes", "20240101000003_tags"]
    assert len(json.loads(every.out)) == 3
    assert unknown.code == 1 and "20240101000009_nope: no such migration in" in unknown.err
    assert "did you mean" in unknown.err
    assert both.code == 1 and "not both" in both.err


def test_django_migrations_come_first_when_a_migration_requires_one(target):
    target.migration(
        "20240101000001_profiles",
        "CREATE TABLE profiles (user_id integer REFERENCES auth_user (id));",
        "DROP TABLE profiles;",
        header="-- sqlmigrate: requires=auth.0001_initial\n",
    )

    result = verify(target, "--all")

    assert result.code == 0, result.text
    assert "20240101000001_profiles: OK" in result.out


def test_keep_keeps_the_throwaway_database_and_says_its_name_on_stderr(target, own_temporary_directory):
    orders(target)

    result = verify(target, "--keep")
    later = verify(target, "--all")

    assert result.code == later.code == 0, result.text + later.text
    [line] = [line for line in result.err.splitlines() if line.startswith("Kept the throwaway database ")]
    name = line.removeprefix("Kept the throwaway database ").removesuffix(".")
    assert throwaway_exists(target, name)  # a kept database is no leftover: the later run leaves it
    assert "Dropped" not in later.err
    if target.vendor == "sqlite":
        assert Path(name).is_file()
        shutil.rmtree(Path(name).parent)
    else:
        drop_database(target, name)


@pg_only
def test_the_throwaway_database_is_named_after_the_test_name_and_dropped(target):
    test_name = target.url.rsplit("/", 1)[1] + "_t"
    connections.settings[target.alias]["TEST"]["NAME"] = test_name

    orders(target)
    kept = verify(target, "--all", "--keep")
    dropped = verify(target, "--all")

    name = kept.err.split("Kept the throwaway database ")[1].split(".")[0]
    assert name.startswith(f"{test_name}_verify_")
    drop_database(target, name)
    started = dropped.out.split("in the throwaway database ")[1].split("...")[0]
    assert started.startswith(f"{test_name}_verify_")
    assert not database_exists(target, started)


@pg_only
def test_a_role_that_may_not_create_databases_gets_a_clear_error(target):
    orders(target)
    role = target.url.rsplit("/", 1)[1] + "_nocreatedb"
    with psycopg.connect(server_of(target), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN NOCREATEDB")
    register_alias("limited", target.url.replace("postgres@", f"{role}@"))
    try:
        result = Target("postgresql", target.url, target.directory, alias="limited").call("sqlmigrate_verify", "--all")
    finally:
        unregister_alias("limited")
        with psycopg.connect(server_of(target), autocommit=True) as admin:
            admin.execute(f"DROP ROLE {role}")

    assert result.code == 1
    assert f"role {role} may not create the throwaway database" in result.err
    assert "CREATEDB" in result.err


def commits(target: Target) -> tuple[int, ...]:
    """The target's pg_stat_database counters, once every session on it has ended (a backend
    writes its counters out as it exits)."""
    name = target.url.rsplit("/", 1)[1]
    with psycopg.connect(server_of(target), autocommit=True) as admin:
        deadline = time.monotonic() + 30
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]).fetchone()[0]:  # type: ignore[index]
            assert time.monotonic() < deadline, "sessions on the target database did not end"
            time.sleep(0.05)
        row = admin.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database"
            " WHERE datname = %s",
            [name],
        ).fetchone()
    return tuple(row)  # type: ignore[arg-type]


def autovacuum_runs(target: Target) -> int:
    """How often autovacuum has worked on the target's tables: it commits there too."""
    with psycopg.connect(target.url, autocommit=True) as conn:
        row = conn.execute("SELECT sum(autovacuum_count + autoanalyze_count) FROM pg_stat_all_tables").fetchone()
    return int(row[0])  # type: ignore[index]


@pg_only
def test_the_target_database_is_left_untouched(target):
    orders(target)
    assert target.call("sqlmigrate_up").code == 0
    target.migration("20240101000002_notes", "CREATE TABLE notes (id integer);", "DROP TABLE notes;")
    tables, history = target.tables(), target.history()
    connections[target.alias].close()
    with psycopg.connect(target.url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # leave autovacuum nothing to do on the new catalogs

    for _ in range(3):  # should autovacuum commit in the target anyway, measure again
        vacuumed = autovacuum_runs(target)
        before = commits(target)
        status = target.manage("sqlmigrate_status")
        after_status = commits(target)
        verified = target.manage("sqlmigrate_verify")
        after_verify = commits(target)
        if autovacuum_runs(target) == vacuumed:
            break

    assert status.returncode == 0 and verified.returncode == 0, verified.stdout + verified.stderr
    assert "20240101000002_notes: OK" in verified.stdout
    status_delta = [b - a for a, b in zip(before, after_status, strict=True)]
    verify_delta = [b - a for a, b in zip(after_status, after_verify, strict=True)]
    assert verify_delta == status_delta  # it read the history as status does, and nothing else
    assert verify_delta[2:] == [0, 0, 0]  # no row inserted, updated or deleted
    assert target.tables() == tables
    assert target.history() == history


# What a step leaves in its session, and a next step that fails if it is still there: up and
# down are separate commands, so each starts without any of it. The first is Lemmy 0.19's case:
# a DOWN that drops an extension a temporary table of its UP used.
SESSION_LEFTOVERS = {
    "postgresql": [
        (
            "CREATE EXTENSION IF NOT EXISTS citext;\n"
            "CREATE TABLE users (email citext);\n"
            "CREATE TEMP TABLE seen AS SELECT email FROM users;",
            "DROP TABLE users;\nDROP EXTENSION citext;",
        ),
        (
            "PREPARE by_email AS SELECT 1;\n"
            "LISTEN users_changed;\n"
            "SELECT pg_advisory_lock(42);\n"
            "SELECT set_config('app.step', 'up', false);",
            "DO $$ BEGIN\n"
            "    IF EXISTS (SELECT FROM pg_prepared_statements) THEN RAISE 'a prepared statement survived'; END IF;\n"
            "    IF EXISTS (SELECT FROM pg_listening_channels()) THEN RAISE 'LISTEN survived'; END IF;\n"
            "    IF EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objid = 42\n"
            "        AND pid = pg_backend_pid()) THEN RAISE 'an advisory lock survived'; END IF;\n"
            "    IF current_setting('app.step', true) = 'up' THEN RAISE 'a setting survived'; END IF;\n"
            "END $$;",
        ),
    ],
    "sqlite": [
        (
            "CREATE TABLE users (email TEXT);\nCREATE TEMP TABLE seen (email TEXT);",
            "CREATE TEMP TABLE seen (email TEXT);\nDROP TABLE seen;\nDROP TABLE users;",
        ),
        ("CREATE TABLE notes (id integer);", "DROP TABLE notes;"),
    ],
}


def test_each_step_starts_in_a_new_session_as_up_and_down_do(target):
    [(users_up, users_down), (session_up, session_down)] = SESSION_LEFTOVERS[target.vendor]
    target.migration("20240101000001_users", users_up, users_down)
    target.migration("20240101000002_session", session_up, session_down)

    verified = verify(target, "--all", "--json")
    commands = [target.manage("sqlmigrate_up"), target.manage("sqlmigrate_down", "--all")]

    assert [command.returncode for command in commands] == [0, 0], [command.stderr for command in commands]
    assert verified.code == 0, verified.text
    assert [row["outcome"] for row in json.loads(verified.out)] == ["ok", "ok"]


# The throwaway database never leaks unnamed: interrupted while it is created, interrupted twice,
# not droppable, or its run killed outright.

SLOW = "20240101000002_slow"
SLOW_SQL = {
    "postgresql": "SELECT pg_sleep(30);",
    # A write first, so that its transaction has a journal to wait for (the history row is last).
    "sqlite": "CREATE TABLE slow (x integer);\n"
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) SELECT count(*) FROM c;",
}
SIGNALS = {"SIGINT": (signal.SIGINT, 130, "Ctrl-C"), "SIGTERM": (signal.SIGTERM, 143, "SIGTERM")}


def wait_until_slow(target: Target, name: str) -> None:
    """Until verify runs the slow migration in its throwaway database ``name``."""
    if target.vendor == "postgresql":
        wait_until(lambda: bool(backends_on(target, name, "%pg_sleep(30)%")), what="the slow migration")
    else:
        wait_until(Path(name + "-journal").exists, what="the slow migration's write transaction")


@pg_only
@pytest.mark.parametrize("how", SIGNALS)
def test_a_signal_when_create_database_has_just_committed_leaves_nothing_behind(target, how):
    signum, code, said = SIGNALS[how]
    orders(target)
    with psycopg.connect(server_of(target)) as holder:  # CREATE DATABASE waits for this lock on its template
        holder.execute("COMMENT ON DATABASE template1 IS 'held by a test'")
        runner = spawn(target, "sqlmigrate_verify", "--all")
        with psycopg.connect(server_of(target), autocommit=True) as admin:
            waiting = "SELECT pid, query FROM pg_stat_activity WHERE query LIKE 'CREATE DATABASE %'"
            waiting += " AND state <> 'idle'"
            wait_until(lambda: bool(admin.execute(waiting).fetchall()), what="CREATE DATABASE")
            [(backend, query)] = admin.execute(waiting).fetchall()
            name = re.search(r'"([^"]+)"', query)[1]  # type: ignore[index]
            runner.send_signal(signal.SIGSTOP)  # verify stays in CREATE DATABASE while the server finishes it
            holder.rollback()
            idle = "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'idle'"
            wait_until(lambda: bool(admin.execute(idle, [backend]).fetchall()), what="CREATE DATABASE to commit")
    assert database_exists(target, name)

    runner.send_signal(signum)  # it arrives in verify's wait for the answer, as a Ctrl-C would
    runner.send_signal(signal.SIGCONT)
    _, err = runner.communicate(timeout=60)

    assert runner.returncode == code, err
    assert err.strip().splitlines() == [f"CommandError: interrupted ({said})"]
    assert not database_exists(target, name)


@pg_only
def test_a_second_signal_while_it_is_dropped_names_it_and_the_next_run_drops_it(target):
    orders(target)
    target.migration(SLOW, SLOW_SQL["postgresql"], "SELECT 1;")
    runner = spawn(target, "sqlmigrate_verify", "--all")
    name = started_in(Output(runner.stdout))
    wait_until_slow(target, name)
    with psycopg.connect(server_of(target)) as holder:  # DROP DATABASE waits for this lock
        holder.execute(f"COMMENT ON DATABASE \"{name}\" IS 'held by a test'")
        runner.send_signal(signal.SIGINT)
        with psycopg.connect(server_of(target), autocommit=True) as admin:
            dropping = "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'DROP DATABASE%%' AND wait_event_type = 'Lock'"
            wait_until(lambda: bool(admin.execute(dropping).fetchall()), what="DROP DATABASE waiting")
        runner.send_signal(signal.SIGTERM)
        err = runner.stderr.read()  # type: ignore[union-attr]
        runner.wait(timeout=60)
        holder.rollback()
    target.migration(SLOW, "SELECT 1;", "SELECT 1;")

    again = verify(target, "--all")

    assert runner.returncode == 143
    assert err.strip().splitlines() == [
        f"Left the throwaway database {name} behind (interrupted while dropping it): the next sqlmigrate_verify "
        "will try to drop it, or drop it by hand.",
        "CommandError: interrupted (SIGTERM)",
    ]
    assert again.code == 0, again.text
    [dropped] = [line for line in again.err.splitlines() if line.startswith("Dropped ")]
    assert dropped.startswith("Dropped 1 throwaway database left behind by earlier verify runs: ")
    assert name in dropped
    assert not database_exists(target, name)


def test_a_killed_runs_leftover_is_dropped_by_the_next_run(target, own_temporary_directory):
    orders(target)
    target.migration(SLOW, SLOW_SQL[target.vendor], "SELECT 1;")
    runner = spawn(target, "sqlmigrate_verify", "--all")
    name = started_in(Output(runner.stdout))
    wait_until_slow(target, name)

    runner.kill()
    runner.wait(timeout=60)
    assert throwaway_exists(target, name)
    if target.vendor == "postgresql":  # the server ends the session when its query ends; do not wait 30 s
        with psycopg.connect(server_of(target), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
        wait_until(lambda: not backends_on(target, name), what="the killed run's session to end")
    target.migration(SLOW, "SELECT 1;", "SELECT 1;")
    again = verify(target, "--all")

    assert again.code == 0, again.text
    [dropped] = [line for line in again.err.splitlines() if line.startswith("Dropped ")]
    assert dropped.startswith("Dropped 1 throwaway database left behind by earlier verify runs: ")
    assert name in dropped
    assert not throwaway_exists(target, name)


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def marker(pid: int, host: str | None = None, age: timedelta = timedelta(0), keep: bool = False) -> str:
    this = Creator.this_run()
    return Creator(pid, host or this.host, this.created - age).marker(keep)


@pg_only
def test_only_marked_leftovers_of_runs_that_are_over_are_dropped(target):
    base = target.url.rsplit("/", 1)[1]
    databases = {
        f"{base}_verify_dead": marker(dead_pid()),
        f"{base}_verify_other_host_old": marker(4242, host="elsewhere", age=timedelta(hours=2)),
        f"{base}_verify_live": marker(os.getpid()),  # another verify of this host, still running
        f"{base}_verify_other_host_new": marker(4242, host="elsewhere", age=timedelta(minutes=1)),
        f"{base}_verify_unmarked": None,
        f"{base}_verify_commented": "our staging copy, do not drop",
        f"{base}_verify_kept": marker(dead_pid(), keep=True),
        f"{base}_verify_connected": marker(dead_pid()),
        f"{base}_named_otherwise": marker(dead_pid()),
    }
    with psycopg.connect(server_of(target), autocommit=True) as admin:
        for name, comment in databases.items():
            admin.execute(f'CREATE DATABASE "{name}"')
            if comment is not None:
                admin.execute(f"COMMENT ON DATABASE \"{name}\" IS '{comment}'")
    orders(target)
    try:
        with psycopg.connect(target.url.rsplit("/", 1)[0] + f"/{base}_verify_connected"):
            result = verify(target)
    finally:
        remaining = [name for name in databases if database_exists(target, name)]
        for name in remaining:
            drop_database(target, name)

    assert result.code == 0, result.text
    assert result.err.splitlines() == [
        f"Dropped 2 throwaway databases left behind by earlier verify runs: {base}_verify_dead, "
        f"{base}_verify_other_host_old."
    ]
    assert remaining == list(databases)[2:]


@sqlite_only
def test_only_marked_leftover_directories_of_runs_that_are_over_are_removed(target, own_temporary_directory):
    directories = {
        "sqlmigrate-verify-dead": marker(dead_pid()),
        "sqlmigrate-verify-live": marker(os.getpid()),
        "sqlmigrate-verify-unmarked": None,
        "sqlmigrate-verify-kept": marker(dead_pid(), keep=True),
        "not-sqlmigrate-verify-dead": marker(dead_pid()),
    }
    for name, text in directories.items():
        (own_temporary_directory / name).mkdir()
        if text is not None:
            (own_temporary_directory / name / "throwaway.txt").write_text(text + "\n")
    orders(target)

    result = verify(target)

    assert result.code == 0, result.text
    dead = own_temporary_directory / "sqlmigrate-verify-dead" / "verify.sqlite3"
    assert result.err.splitlines() == [f"Dropped 1 throwaway database left behind by earlier verify runs: {dead}."]
    assert sorted(path.name for path in own_temporary_directory.iterdir()) == sorted(list(directories)[1:])


@pg_only
def test_a_throwaway_database_that_cannot_be_dropped_is_named_and_the_outcome_stands(target):
    target.migration(
        "20240101000001_template",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I IS_TEMPLATE true', current_database()); END $$;",
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I IS_TEMPLATE false', current_database()); END $$;",
    )

    result = verify(target)

    name = result.out.split("in the throwaway database ")[1].split("...")[0]
    still_there = database_exists(target, name)
    with psycopg.connect(server_of(target), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE false')
    drop_database(target, name)
    assert result.code == 0, result.text
    assert result.err.splitlines() == [
        f"Left the throwaway database {name} behind (could not drop it: cannot drop a template database): the next "
        "sqlmigrate_verify will try to drop it, or drop it by hand."
    ]
    assert still_there


@pg_only
def test_an_interrupted_create_database_still_at_work_is_ended_before_the_drop(target):
    """psycopg closes the connection when a second Ctrl-C cuts its cancel short, and the server
    may finish the CREATE DATABASE after a DROP DATABASE IF EXISTS that found nothing. Two
    signals cannot be timed into psycopg's cancel from outside, so this sets the scene the
    interrupted create leaves: a CREATE DATABASE at work in a server process it had noted."""
    name = target.url.rsplit("/", 1)[1] + "_verify_creating"
    place = backend_for(connections[target.alias]).throwaway_place()
    creator = psycopg.connect(server_of(target), autocommit=True)

    def create() -> None:
        with contextlib.suppress(psycopg.OperationalError):
            creator.execute(f'CREATE DATABASE "{name}"')

    with psycopg.connect(server_of(target)) as holder:  # CREATE DATABASE waits for this lock on its template
        holder.execute("COMMENT ON DATABASE template1 IS 'held by a test'")
        thread = threading.Thread(target=create)
        thread.start()
        wait_until(lambda: bool(backends_on(target, "postgres", "CREATE DATABASE%")), what="CREATE DATABASE")
        place.asked.add(name)
        place.creating[name] = creator.info.backend_pid  # type: ignore[attr-defined]

        place.drop(name)

        holder.rollback()
    thread.join(timeout=60)
    creator.close()
    assert not database_exists(target, name)

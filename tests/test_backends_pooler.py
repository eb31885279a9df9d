"""Behind a real PgBouncer (Debian's package, started by the tests as the PostgreSQL server is):
transaction pooling (declared as Django asks, ``DISABLE_SERVER_SIDE_CURSORS``), session
pooling, and statement pooling refused; concurrent ``manage.py`` processes, a runner killed
mid-migration, and nothing left on the pooled server sessions afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from urllib.parse import urlsplit

import psycopg
import pytest

from sqlmigrate_app.backends.postgresql import advisory_lock_key
from sqlmigrate_app.errors import UnsupportedPooler
from sqlmigrate_app.executor import Reporter
from sqlmigrate_app.files import parse_migration
from sqlmigrate_app.management.base import EXIT_POOLER
from sqlmigrate_app.runner import MigrationRunner

from .support.pgbouncer import POOL_SIZE, find_pgbouncer, pgbouncer
from .support.processes import Output, spawn, wait_until
from .support.target import Target, register_alias, unregister_alias
from .test_backends_lock import write_logging_migrations

pytestmark = pytest.mark.parametrize("target", ["postgresql"], indirect=True)

MIGRATIONS = 30
RUNNERS = 6
DECLARED = {"DATABASE_DISABLE_SERVER_SIDE_CURSORS": "1"}


@pytest.fixture(scope="module")
def poolers(postgres_server: str) -> Iterator[dict[str, str]]:
    """A PgBouncer per pooling mode in front of the tests' server: each mode's URL."""
    binary = find_pgbouncer()
    if binary is None:
        if os.environ.get("SQLMIGRATE_REQUIRE_POSTGRES") == "1":
            pytest.fail("PgBouncer is required (SQLMIGRATE_REQUIRE_POSTGRES=1) but not installed (pgbouncer)")
        pytest.skip("no pgbouncer: apt-get install pgbouncer")
    with ExitStack() as stack:
        modes = ("transaction", "session", "statement")
        yield {mode: stack.enter_context(pgbouncer(binary, postgres_server, mode)) for mode in modes}


def through(target: Target, pooler: str, env: dict[str, str] | None = None) -> Target:
    """``target``'s database reached through ``pooler`` (a URL of its server's database)."""
    port = urlsplit(pooler).port
    url = target.url.replace(f":{urlsplit(target.url).port}/", f":{port}/", 1)
    return Target(target.vendor, url, target.directory, target.alias, {**target.env, **(env or {})})


def our_locks(target: Target) -> list[tuple[object, ...]]:
    """The advisory locks on the run lock's key, on the server (read directly, not pooled)."""
    key = advisory_lock_key("public", "schema_migrations")
    return target.query(
        "SELECT pid, granted FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1"
        " AND classid::bigint = (%s::bigint >> 32) & 4294967295 AND objid::bigint = %s::bigint & 4294967295",
        [key, key],
    )


def server_sessions_settings(pooled: Target) -> list[tuple[object, ...]]:
    """What each pooled server session holds: as many new clients as the pool has server
    connections, each inside a transaction (so each holds its own), asking with SHOW."""
    clients = [psycopg.connect(pooled.url) for _ in range(POOL_SIZE)]
    try:
        found = set()
        for client in clients:
            client.execute("SELECT 1")  # BEGIN: the server session stays this client's
            found.add(
                client.execute(
                    "SELECT pg_backend_pid(), current_setting('client_connection_check_interval'),"
                    " current_setting('lock_timeout'), current_setting('statement_timeout'),"
                    " current_setting('search_path'), current_setting('sqlmigrate.migration', true),"
                    " current_setting('sqlmigrate.schema', true), current_user"
                ).fetchone()
            )
        return sorted(found)  # type: ignore[arg-type]
    finally:
        for client in clients:
            client.close()


def assert_nothing_left(target: Target, pooled: Target) -> None:
    assert our_locks(target) == []
    sessions = server_sessions_settings(pooled)
    assert len(sessions) == POOL_SIZE
    for _pid, check, lock, statement, path, token, schema, user in sessions:
        assert (check, lock, statement, path) == ("0", "0", "0", '"$user", public')
        assert token in (None, "") and schema in (None, "") and user == "postgres"


def assert_history_matches_the_log(target: Target, ids: list[str]) -> None:
    history = target.history()
    assert history == ids[: len(history)]  # a prefix of the files, no gap
    steps = sorted(row[0] for row in target.query("SELECT step FROM log"))
    assert steps == [int(migration_id.rsplit("_", 1)[1]) for migration_id in history]


def run_all(runners: list[subprocess.Popen[str]]) -> list[tuple[str, str]]:
    outputs = [runner.communicate(timeout=300) for runner in runners]
    for runner, (out, err) in zip(runners, outputs, strict=True):
        assert runner.returncode == 0, out + err
        assert "Traceback" not in err
    return outputs


def test_runners_through_transaction_pooling_apply_each_migration_exactly_once(target, poolers):
    target.query("CREATE TABLE log (step INTEGER NOT NULL)")
    ids = write_logging_migrations(target, MIGRATIONS)
    pooled = through(target, poolers["transaction"], DECLARED)

    outputs = run_all([spawn(pooled, "sqlmigrate_up") for _ in range(RUNNERS)])

    assert target.history() == ids
    assert target.query("SELECT COUNT(*), COUNT(DISTINCT step) FROM log")[0] == (MIGRATIONS, MIGRATIONS)
    assert sum(out.count(" OK (") for out, _ in outputs) == MIGRATIONS
    assert_nothing_left(target, pooled)


def test_up_and_down_at_once_through_transaction_pooling_keep_the_history_in_step(target, poolers):
    target.query("CREATE TABLE log (step INTEGER NOT NULL)")
    ids = write_logging_migrations(target, 10)
    pooled = through(target, poolers["transaction"], DECLARED)
    assert pooled.manage("sqlmigrate_up").returncode == 0
    ids += write_logging_migrations(target, 10, start=10)

    run_all([spawn(pooled, "sqlmigrate_up"), spawn(pooled, "sqlmigrate_down", "3"), spawn(pooled, "sqlmigrate_up")])

    assert len(target.history()) in (17, 20)
    assert_history_matches_the_log(target, ids)
    assert_nothing_left(target, pooled)


def test_runners_through_session_pooling_work_as_on_a_direct_connection(target, poolers):
    target.query("CREATE TABLE log (step INTEGER NOT NULL)")
    ids = write_logging_migrations(target, MIGRATIONS)
    pooled = through(target, poolers["session"])

    outputs = run_all([spawn(pooled, "sqlmigrate_up") for _ in range(RUNNERS)])

    assert target.history() == ids
    assert target.query("SELECT COUNT(*), COUNT(DISTINCT step) FROM log")[0] == (MIGRATIONS, MIGRATIONS)
    assert sum(out.count(" OK (") for out, _ in outputs) == MIGRATIONS
    assert our_locks(target) == []


def test_a_migration_that_sets_the_session_leaves_nothing_on_a_pooled_server_session(target, poolers):
    target.migration(
        "20240101000000_settings",
        "SET search_path = pg_catalog;\nSET statement_timeout = '7s';\n"
        "SELECT set_config('lock_timeout', '9s', false);\nCREATE TABLE public.things (id integer);",
        "DROP TABLE public.things;",
    )
    target.migration("20240101000001_more", "CREATE TABLE more (id integer);", "DROP TABLE more;")
    pooled = through(target, poolers["transaction"], DECLARED)

    result = pooled.manage("sqlmigrate_up")

    assert result.returncode == 0, result.stdout + result.stderr
    assert target.history() == ["20240101000000_settings", "20240101000001_more"]
    assert {"things", "more"} <= target.tables()
    assert_nothing_left(target, pooled)


def test_a_runner_killed_mid_migration_behind_transaction_pooling_leaves_nothing_and_another_finishes(target, poolers):
    target.query("CREATE TABLE log (step INTEGER NOT NULL)")
    target.query("CREATE TABLE gate (id integer)")
    target.query("INSERT INTO gate VALUES (1)")  # the slow migration sleeps while gate has a row
    ids = write_logging_migrations(target, 3)
    slow = "20240101000010_slow"
    sleep = "SELECT pg_sleep(CASE WHEN EXISTS (SELECT FROM gate) THEN 60 ELSE 0 END);"
    target.migration(slow, f"INSERT INTO log VALUES (100);\n{sleep}", "DELETE FROM log WHERE step = 100;")
    pooled = through(target, poolers["transaction"], DECLARED)

    runner = spawn(pooled, "sqlmigrate_up")
    out = Output(runner.stdout)
    out.wait_for(f"Applying {slow}...")
    wait_until(
        lambda: target.query(
            # its wait event, not its text: in a batch the query starts with the migrations before it,
            # and PostgreSQL cuts it at track_activity_query_size (1 KB)
            "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND pid <> pg_backend_pid()"
        ),
        what="the slow migration on the server",
    )
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=30)
    target.query("DELETE FROM gate")
    finished = pooled.manage("sqlmigrate_up", "--wait", "20")

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert target.history() == [*ids, slow]
    assert sorted(row[0] for row in target.query("SELECT step FROM log")) == [0, 1, 2, 100]
    assert_nothing_left(target, pooled)


def test_statement_pooling_is_refused_in_one_line(target, poolers):
    target.migration("20240101000000_things", "CREATE TABLE things (id integer);", "DROP TABLE things;")
    pooled = through(target, poolers["statement"])

    result = pooled.manage("sqlmigrate_up")

    assert result.returncode == EXIT_POOLER, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and "statement mode" in error[0] and "--database" in error[0]
    assert "things" not in target.tables() and our_locks(target) == []


def test_a_no_transaction_migration_is_refused_on_a_transaction_pooled_alias(target, poolers):
    target.migration("20240101000000_things", "CREATE TABLE things (id integer);", "DROP TABLE things;")
    target.migration(
        "20240101000001_index",
        "CREATE INDEX CONCURRENTLY things_id ON things (id);",
        "DROP INDEX CONCURRENTLY things_id;",
        header="-- sqlmigrate: no-transaction\n",
    )
    pooled = through(target, poolers["transaction"], DECLARED)

    result = pooled.manage("sqlmigrate_up")

    assert result.returncode == 1
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and "20240101000001_index.sql" in error[0] and "direct alias (--database)" in error[0]
    assert not {"things", "schema_migrations"} & target.tables()


def test_the_wait_through_transaction_pooling_names_who_holds_the_lock(target, poolers):
    target.migration("20240101000000_things", "CREATE TABLE things (id integer);", "DROP TABLE things;")
    holder = psycopg.connect(target.url, autocommit=True, application_name="stranded-runner")
    holder.execute("SELECT pg_advisory_lock(%s)", [advisory_lock_key("public", "schema_migrations")])
    pid = holder.info.backend_pid
    pooled = through(target, poolers["transaction"], DECLARED)

    try:
        result = pooled.manage("sqlmigrate_up", "--wait", "1")
    finally:
        holder.close()

    assert result.returncode == 1, result.stdout + result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert "more than 1 s" in error and f"server process {pid}" in error and "'stranded-runner'" in error
    assert "idle since" in error and "pg_advisory_lock" in error
    assert "things" not in target.tables()


class TakesTheLockSession(Reporter):
    """When the first migration starts, a client of the pooler opens a transaction: PgBouncer
    gives it the server session it used last (LIFO), the one that took the run's session lock,
    so the migration's transaction runs on another."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client: psycopg.Connection | None = None

    def starting(self, migration, action) -> None:
        if self.client is None:
            self.client = psycopg.connect(self.url)
            self.client.execute("SELECT 1")


def test_transaction_pooling_the_alias_does_not_declare_is_refused_in_one_line(target, poolers):
    target.migration("20240101000000_things", "CREATE TABLE things (id integer);", "DROP TABLE things;")
    pooled = through(target, poolers["transaction"])
    register_alias("undeclared", pooled.url)
    reporter = TakesTheLockSession(pooled.url)

    try:
        with pytest.raises(UnsupportedPooler) as refused:
            MigrationRunner(using="undeclared", directory=target.directory, reporter=reporter).migrate()
    finally:
        unregister_alias("undeclared")
        if reporter.client is not None:
            reporter.client.close()

    assert "DISABLE_SERVER_SIDE_CURSORS" in str(refused.value) and "\n" not in str(refused.value)
    assert "things" not in target.tables() and target.history() == []
    stranded = [pid for pid, granted in our_locks(target) if granted]
    assert len(stranded) <= 1 and all(f"pg_terminate_backend({pid})" in str(refused.value) for pid in stranded)
    for pid in stranded:  # what the message says to do
        target.query("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(lambda: our_locks(target) == [], what="the stranded lock to go")


def test_redo_and_repair_through_transaction_pooling(target, poolers):
    target.migration("20240101000000_things", "CREATE TABLE things (id integer);", "DROP TABLE things;")
    target.migration("20240101000001_more", "CREATE TABLE more (id integer);", "DROP TABLE more;")
    pooled = through(target, poolers["transaction"], DECLARED)
    assert pooled.manage("sqlmigrate_up").returncode == 0
    target.migration("20240101000001_more", "CREATE TABLE more (id integer, name text);", "DROP TABLE more;")

    redone = pooled.manage("sqlmigrate_redo")
    target.migration("20240101000001_more", "CREATE TABLE more (id integer, name text); -- edited", "DROP TABLE more;")
    repaired = pooled.manage("sqlmigrate_repair", "--noinput")

    assert redone.returncode == 0, redone.stdout + redone.stderr
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert target.history() == ["20240101000000_things", "20240101000001_more"]
    assert target.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'more'") == [(2,)]
    assert pooled.manage("sqlmigrate_status", "--check").returncode == 0
    assert_nothing_left(target, pooled)


# Repeatable migrations (issue 22) through transaction pooling: each transaction's claim expects a
# repeatable's row as the plan saw it, and one claim opens a repeatable's unit with its dependents.

LOGGED = (
    "INSERT INTO log (step) VALUES ({step});\nSELECT pg_sleep(0.3);\n"
    "CREATE OR REPLACE VIEW logged_v AS SELECT {step} AS step;\n"
)


def repeatable_rows(target: Target) -> dict[str, str]:
    return dict(target.query("SELECT id, checksum FROM schema_migrations WHERE id LIKE 'R%%' ORDER BY id"))


def file_checksum(target: Target, name: str) -> str:
    return parse_migration(target.directory / f"{name}.sql", (target.directory / f"{name}.sql").read_bytes()).checksum


def test_runners_through_transaction_pooling_re_apply_a_changed_repeatable_once(target, poolers):
    target.query("CREATE TABLE log (step INTEGER NOT NULL)")
    ids = write_logging_migrations(target, 3)
    target.write("R__logged.sql", LOGGED.format(step=1000))
    pooled = through(target, poolers["transaction"], DECLARED)
    assert pooled.manage("sqlmigrate_up").returncode == 0
    ids += write_logging_migrations(target, 10, start=3)  # the runners' plans: versioned, then the repeatable
    target.write("R__logged.sql", LOGGED.format(step=2000))

    outputs = run_all([spawn(pooled, "sqlmigrate_up") for _ in range(RUNNERS)])

    assert target.history() == [*ids, "R__logged"]
    steps = sorted(row[0] for row in target.query("SELECT step FROM log"))
    assert steps == [*range(13), 1000, 2000]  # each versioned migration once, the changed repeatable once
    assert repeatable_rows(target) == {"R__logged": file_checksum(target, "R__logged")}
    assert sum(out.count("Applying R__logged... OK") for out, _ in outputs) == 1
    assert sum(out.count(" OK (") for out, _ in outputs) == 11
    assert target.query("SELECT step FROM logged_v") == [(2000,)]
    assert pooled.manage("sqlmigrate_status", "--check").returncode == 0
    assert_nothing_left(target, pooled)


def test_a_changed_repeatable_with_its_dependents_through_transaction_pooling(target, poolers):
    target.migration(
        "20240101000000_items", "CREATE TABLE items (id integer, name text, price integer);", "DROP TABLE items;"
    )
    base = (
        "DROP VIEW IF EXISTS base_v;\nCREATE VIEW base_v AS SELECT {columns} FROM items;\n-- DOWN\nDROP VIEW base_v;\n"
    )
    target.write("R__base_v.sql", base.format(columns="id, name"))
    target.write(  # it changes the session: nothing of it may stay on a pooled server session
        "R__top_v.sql",
        "SET statement_timeout = '7s';\nCREATE OR REPLACE VIEW top_v AS SELECT name FROM base_v;\n"
        "-- DOWN\nDROP VIEW top_v;\n",
    )
    pooled = through(target, poolers["transaction"], DECLARED)
    assert pooled.manage("sqlmigrate_up").returncode == 0
    target.write("R__base_v.sql", base.format(columns="price, id, name"))  # top_v must be dropped first

    outputs = run_all([spawn(pooled, "sqlmigrate_up") for _ in range(3)])

    assert sum(out.count("Applying R__base_v... OK") for out, _ in outputs) == 1
    assert sum(out.count("Applying R__top_v... OK") for out, _ in outputs) == 1
    assert repeatable_rows(target) == {name: file_checksum(target, name) for name in ("R__base_v", "R__top_v")}
    assert target.query("SELECT count(DISTINCT executed_at) FROM schema_migrations WHERE id LIKE 'R%%'") == [(1,)]
    assert target.query("SELECT price FROM base_v") == [] and target.query("SELECT name FROM top_v") == []
    assert_nothing_left(target, pooled)

    down = pooled.manage("sqlmigrate_down", "--all")

    assert down.returncode == 0, down.stdout + down.stderr
    assert [line.split("...")[0] for line in down.stdout.splitlines()[:3]] == [
        "Rolling back R__top_v",
        "Rolling back R__base_v",
        "Rolling back 20240101000000_items",
    ]
    assert target.history() == [] and "items" not in target.tables()
    assert target.query("SELECT table_name FROM information_schema.views WHERE table_schema = 'public'") == []
    assert_nothing_left(target, pooled)


def test_a_migration_with_recreate_repeatables_through_transaction_pooling_runs_once_with_them(target, poolers):
    target.query("CREATE TABLE log (step INTEGER NOT NULL)")
    target.migration("20240101000000_items", "CREATE TABLE items (id integer, price integer);", "DROP TABLE items;")
    target.write(
        "R__price_v.sql", "DROP VIEW IF EXISTS price_v;\nCREATE VIEW price_v AS SELECT id, price FROM items;\n"
    )
    target.write("R__dear_v.sql", "DROP VIEW IF EXISTS dear_v;\nCREATE VIEW dear_v AS SELECT id FROM price_v;\n")
    pooled = through(target, poolers["transaction"], DECLARED)
    assert pooled.manage("sqlmigrate_up").returncode == 0
    widen = "20240101000001_widen"
    target.migration(
        widen,
        "INSERT INTO log (step) VALUES (1);\nALTER TABLE items ALTER COLUMN price TYPE bigint;",
        "",
        header="-- sqlmigrate: recreate-repeatables\n",
    )
    checksums = repeatable_rows(target)

    outputs = run_all([spawn(pooled, "sqlmigrate_up") for _ in range(3)])

    assert sum(out.count(f"Applying {widen}... OK") for out, _ in outputs) == 1
    assert target.query("SELECT step FROM log") == [(1,)]
    assert target.history() == ["20240101000000_items", widen, "R__dear_v", "R__price_v"]
    assert repeatable_rows(target) == checksums  # the files did not change: the same checksums, written again
    assert target.query(
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'price_v' AND column_name = 'price'"
    ) == [("bigint",)]
    assert pooled.manage("sqlmigrate_status", "--check").returncode == 0
    assert_nothing_left(target, pooled)

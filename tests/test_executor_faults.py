"""When a migration fails or is stopped, nothing is left half done: an error (its SQL run once, the
error on its file line with the server's whole message, DETAIL and HINT included), Ctrl-C and
SIGTERM, SIGKILL, a server shutdown, a terminated backend, a statement or lock timeout (and
``--retries``)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from .support.migrations import SECOND, big_section
from .support.postgres_server import find_server_binaries, local_cluster
from .support.processes import Output, spawn, wait_until
from .support.target import Target

FIRST = "20240101000000_create_a"
SLOW = "20240101000001_slow"
LAST = "20240101000002_create_c"
# Keeps SQLite busy for many seconds, so the process can be killed in the middle.
SQLITE_BURN = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000000) SELECT count(*) FROM c;"
)


# The migration's pg_sleep is running: told by its wait event rather than by the query's text,
# which PostgreSQL cuts at track_activity_query_size (1 KB), and which in a batch starts with the
# migrations before it.
SLEEPING = "wait_event = 'PgSleep'"


def write_three(target, middle_up):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);", "DROP TABLE a;")
    target.migration(SLOW, middle_up, "DROP TABLE b;")
    target.migration(LAST, "CREATE TABLE c (id INTEGER);", "DROP TABLE c;")


def assert_stopped_before_middle(target):
    assert target.history() == [FIRST]
    assert {"a", "b", "c"} & target.tables() == {"a"}


def test_failing_migration_is_rolled_back_and_applied_once_fixed(target):
    write_three(target, "CREATE TABLE b (id INTEGER);\nINSERT INTO b VALUES (1);\nINSERT INTO nowhere VALUES (1);")

    result = target.manage("sqlmigrate_up")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert f"{SLOW}.sql:4: {SLOW} failed:" in error and "nowhere" in error
    assert "rolled back, nothing of it was applied" in error
    assert_stopped_before_middle(target)

    write_three(target, "CREATE TABLE b (id INTEGER);\nINSERT INTO b VALUES (1);")
    assert target.manage("sqlmigrate_up").returncode == 0
    assert target.history() == [FIRST, SLOW, LAST]
    assert target.query("SELECT id FROM b") == [(1,)]


def test_sigkill_mid_migration_leaves_nothing_half_done(target):
    slow = "SELECT pg_sleep(30);" if target.vendor == "postgresql" else SQLITE_BURN
    write_three(target, f"CREATE TABLE b (id INTEGER);\nINSERT INTO b VALUES (1);\n{slow}")

    runner = spawn(target, "sqlmigrate_up")
    out = Output(runner.stdout)
    out.wait_for(f"Applying {SLOW}...")
    if target.vendor == "postgresql":
        wait_until(lambda: target.query(f"SELECT 1 FROM pg_stat_activity WHERE {SLEEPING} AND pid <> pg_backend_pid()"))
    else:
        journal = Path(target.url.removeprefix("sqlite:///") + "-journal")
        wait_until(journal.exists, what="SQLite's rollback journal (a write transaction under way)")
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait(timeout=30)

    assert_stopped_before_middle(target)
    write_three(target, "CREATE TABLE b (id INTEGER);\nINSERT INTO b VALUES (1);")
    # The killed session's lock must not outlive it for long (PG notices the dead client).
    result = target.manage("sqlmigrate_up", "--wait", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert target.history() == [FIRST, SLOW, LAST]
    assert target.query("SELECT id FROM b") == [(1,)]


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_terminated_backend_is_reported_as_a_lost_connection(target):
    write_three(target, "CREATE TABLE b (id INTEGER);\nSELECT pg_sleep(30);")

    runner = spawn(target, "sqlmigrate_up")
    query = f"SELECT pid FROM pg_stat_activity WHERE {SLEEPING} AND pid <> pg_backend_pid()"
    wait_until(lambda: target.query(query), what="the migration's backend")
    target.query("SELECT pg_terminate_backend(%s)", [target.query(query)[0][0]])
    out, err = runner.communicate(timeout=60)

    assert runner.returncode == 1, out + err
    assert "Traceback" not in err
    error = err.strip().splitlines()[-1]
    assert f"{SLOW}.sql" in error and "lost the connection to database 'default'" in error
    assert_stopped_before_middle(target)


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_statement_timeout_directive_applies_to_that_migration_only(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);\nSELECT pg_sleep(0.5);", "DROP TABLE a;")
    target.migration(
        SLOW, "CREATE TABLE b (id INTEGER);\nSELECT pg_sleep(5);", "", header="-- sqlmigrate: statement-timeout=200ms\n"
    )

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert "canceling statement due to statement timeout" in result.err
    assert "rolled back" in result.err
    assert_stopped_before_middle(target)


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_statement_timeout_setting_is_the_default(target, settings):
    settings.SQLMIGRATE_STATEMENT_TIMEOUT = "200ms"
    write_three(target, "CREATE TABLE b (id INTEGER);\nSELECT pg_sleep(5);")

    result = target.call("sqlmigrate_up")

    assert result.code == 1 and "canceling statement due to statement timeout" in result.err
    assert_stopped_before_middle(target)
    assert target.query("SHOW statement_timeout") != [("200ms",)]  # SET LOCAL: gone after the transaction


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
@pytest.mark.parametrize("source", ["directive", "setting"])
def test_lock_timeout_gives_up_on_a_locked_table(target, settings, source):
    target.query("CREATE TABLE busy (id INTEGER)")
    header = ""
    if source == "directive":
        header = "-- sqlmigrate: lock-timeout=200ms\n"
    else:
        settings.SQLMIGRATE_LOCK_TIMEOUT = "200ms"
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);", "DROP TABLE a;")
    target.migration(SLOW, "CREATE TABLE b (id INTEGER);\nALTER TABLE busy ADD COLUMN x INTEGER;", "", header=header)

    with psycopg.connect(target.url) as holder:
        holder.execute("LOCK TABLE busy IN ACCESS SHARE MODE")
        result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert f"{SLOW}.sql:" in result.err and "canceling statement due to lock timeout" in result.err
    assert_stopped_before_middle(target)
    assert target.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'busy'") == [(1,)]


pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)


def hold_lock_on(target, table: str) -> tuple[psycopg.Connection, threading.Event]:
    """Another session holding ``table`` locked until the returned event is set."""
    holder = psycopg.connect(target.url)
    holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    release = threading.Event()

    def wait_then_release() -> None:
        release.wait(60)
        holder.rollback()
        holder.close()

    threading.Thread(target=wait_then_release, daemon=True).start()
    return holder, release


@pg_only
def test_a_lock_timeout_is_retried_with_a_growing_pause_until_the_lock_is_free(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);")
    assert target.call("sqlmigrate_up").code == 0
    target.migration(SECOND, "ALTER TABLE a ADD COLUMN b INTEGER;", header="-- sqlmigrate: lock-timeout=100ms\n")
    _, release = hold_lock_on(target, "a")
    runner = spawn(target, "sqlmigrate_up", "--retries", "5")
    out = Output(runner.stdout)

    out.wait_for("LOCK TIMEOUT, try 3 of 6 in 1 s...")
    release.set()
    runner.wait(timeout=60)

    assert runner.returncode == 0, out.text
    assert out.text.startswith(f"Applying {SECOND}... LOCK TIMEOUT, try 2 of 6 in 0.5 s... LOCK TIMEOUT, try 3 of 6")
    assert " OK (" in out.text and target.history() == [FIRST, SECOND]


@pg_only
def test_retries_spent_fail_with_the_usual_message_and_other_errors_are_never_retried(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);")
    assert target.call("sqlmigrate_up").code == 0
    target.migration(SECOND, "ALTER TABLE a ADD COLUMN b INTEGER;", header="-- sqlmigrate: lock-timeout=50ms\n")
    _, release = hold_lock_on(target, "a")
    try:
        spent = target.call("sqlmigrate_up", retries=1)
    finally:
        release.set()
    target.migration(SECOND, "SELECT 1/0;", header="-- sqlmigrate: lock-timeout=50ms\n")
    other = target.call("sqlmigrate_up", retries=3)

    assert spent.code == 1 and spent.out.count("LOCK TIMEOUT") == 1
    assert "canceling statement due to lock timeout [rolled back, nothing of it was applied or recorded]" in spent.err
    assert other.code == 1 and "LOCK TIMEOUT" not in other.out and "division by zero" in other.err


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


# Long enough to be interrupted; on SQLite the signal is acted on when the statement ends
# (SQLite does not look at signals), so there it must also end soon.
SLOW_SQL = {
    "postgresql": "SELECT pg_sleep(30);",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000)"
    " SELECT count(*) FROM c;",
}


SIGNALS = {"SIGINT": (signal.SIGINT, 130, "Ctrl-C"), "SIGTERM": (signal.SIGTERM, 143, "SIGTERM")}


def wait_until_running(target: Target, out: Output) -> None:
    out.wait_for(f"Applying {SLOW}...")
    if target.vendor == "postgresql":
        wait_until(
            lambda: bool(target.query(f"SELECT 1 FROM pg_stat_activity WHERE {SLEEPING}")), what="the migration's query"
        )
    else:
        journal = Path(target.url.removeprefix("sqlite:///") + "-journal")
        wait_until(journal.exists, what="SQLite's rollback journal (a write transaction under way)")


def runner_backends(target: Target, query: str = "%") -> list[tuple[int]]:
    return target.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND query LIKE %s",
        [query],
    )


def advisory_locks(target: Target) -> list[tuple[int]]:
    return target.query("SELECT pid FROM pg_locks WHERE locktype = 'advisory'")


@pytest.mark.parametrize("name", SIGNALS)
def test_a_signal_mid_migration_rolls_it_back_and_says_so_in_one_line(target, name):
    signum, code, how = SIGNALS[name]
    write_three(target, f"CREATE TABLE b (id INTEGER);\nINSERT INTO b VALUES (1);\n{SLOW_SQL[target.vendor]}")
    runner = spawn(target, "sqlmigrate_up")
    out = Output(runner.stdout)
    wait_until_running(target, out)

    runner.send_signal(signum)
    sent = time.monotonic()
    err = runner.stderr.read()  # type: ignore[union-attr]
    runner.wait(timeout=60)

    assert runner.returncode == code
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        f"CommandError: {target.directory / SLOW}.sql: {SLOW} interrupted ({how}) "
        "[rolled back, nothing of it was applied or recorded]"
    ]
    assert f"Applying {SLOW}... INTERRUPTED (" in out.text
    assert_stopped_before_middle(target)
    if target.vendor == "postgresql":
        wait_until(lambda: not runner_backends(target) and not advisory_locks(target), timeout=10, what="cleanup")
        print(f"{name}: backend gone and lock free {time.monotonic() - sent:.2f} s after the signal")
    write_three(target, "CREATE TABLE b (id INTEGER);")
    assert target.manage("sqlmigrate_up", "--wait", "5").returncode == 0
    assert target.history() == [FIRST, SLOW, LAST]


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
def test_ctrl_c_in_a_no_transaction_migration_says_which_statements_had_run(target):
    target.migration(FIRST, "CREATE TABLE a (id INTEGER);")
    target.migration(
        SLOW,
        "CREATE TABLE b (id INTEGER);\nSELECT pg_sleep(30);\nCREATE TABLE c (id INTEGER);",
        header="-- sqlmigrate: no-transaction\n",
    )
    runner = spawn(target, "sqlmigrate_up")
    out = Output(runner.stdout)
    wait_until_running(target, out)

    runner.send_signal(signal.SIGINT)
    err = runner.stderr.read()  # type: ignore[union-attr]
    runner.wait(timeout=60)

    assert runner.returncode == 130
    assert err.strip().splitlines() == [
        f"CommandError: {target.directory / SLOW}.sql: {SLOW} interrupted (Ctrl-C) "
        "[no-transaction: 1 of 3 statements had already run (line 3); it was not recorded]"
    ]
    assert target.history() == [FIRST]
    assert {"a", "b", "c"} & target.tables() == {"a", "b"}


@pytest.fixture
def own_server() -> Iterator[str]:
    """A PostgreSQL of this test's own, which it may shut down."""
    bindir = find_server_binaries()
    if bindir is None:
        if os.environ.get("SQLMIGRATE_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL server binaries are required (SQLMIGRATE_REQUIRE_POSTGRES=1)")
        pytest.skip("no PostgreSQL server binaries to start a server of our own")
    with local_cluster(bindir) as url:
        yield url


def test_a_server_shutdown_mid_migration_names_the_migration_and_the_reason(own_server, tmp_path):
    directory = tmp_path / "migrations"
    directory.mkdir()
    target = Target("postgresql", own_server, directory)
    write_three(target, "CREATE TABLE b (id INTEGER);\nSELECT pg_sleep(30);")
    with psycopg.connect(own_server, autocommit=True) as admin:
        data = Path(admin.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
    runner = spawn(target, "sqlmigrate_up")
    out = Output(runner.stdout)
    out.wait_for(f"Applying {SLOW}...")
    with psycopg.connect(own_server, autocommit=True) as admin:
        query = f"SELECT 1 FROM pg_stat_activity WHERE {SLEEPING} AND pid <> pg_backend_pid()"
        wait_until(lambda: bool(admin.execute(query).fetchall()), what="the migration's query")

    os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGINT)  # a fast shutdown
    err = runner.stderr.read()  # type: ignore[union-attr]
    runner.wait(timeout=60)

    assert runner.returncode == 1
    assert err.strip().splitlines() == [
        f"CommandError: {directory / SLOW}.sql:3: {SLOW} failed: lost the connection to database 'default' "
        "(terminating connection due to administrator command) [rolled back, nothing of it was applied or recorded]"
    ]

"""Ctrl-C, SIGTERM and a server shutdown in the middle of a migration: one line naming the
migration and what became of it, the shell's exit code, no traceback, nothing half done."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from .support.postgres_server import find_server_binaries, local_cluster
from .support.processes import Output, spawn, wait_until
from .support.target import Target
from .test_executor_faults import FIRST, LAST, SLOW, assert_stopped_before_middle, write_three

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
        wait_until(lambda: bool(runner_backends(target, "%pg_sleep(30)%")), what="the migration's query")
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
        query = "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()"
        wait_until(lambda: bool(admin.execute(query).fetchall()), what="the migration's query")

    os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGINT)  # a fast shutdown
    err = runner.stderr.read()  # type: ignore[union-attr]
    runner.wait(timeout=60)

    assert runner.returncode == 1
    assert err.strip().splitlines() == [
        f"CommandError: {directory / SLOW}.sql:3: {SLOW} failed: lost the connection to database 'default' "
        "(terminating connection due to administrator command) [rolled back, nothing of it was applied or recorded]"
    ]

"""Batches: consecutive transactional migrations travel in one message, each its own transaction
(PostgreSQL). Each test checks the history against the schema it leaves."""

from __future__ import annotations

import re
import signal
import threading

import psycopg
import pytest
from django.db import connections

from benchmarks.latency_proxy import LatencyProxy
from sqlmigrate_app.errors import ConfigurationError, MissingSchema
from sqlmigrate_app.files import checksum
from sqlmigrate_app.runner import MigrationRunner

from .support.processes import Output, spawn, wait_until
from .support.target import Target, ok
from .support.wire import queries_on_the_wire

pg_only = pytest.mark.parametrize("target", ["postgresql"], indirect=True)
IDS = [f"2024010100000{i}_t{i}" for i in range(5)]


def write_five(target: Target, special: dict[int, tuple[str, str]] | None = None) -> None:
    """Five migrations, each creating its table ``t<i>``; ``special`` gives one its own UP and header."""
    for index, migration_id in enumerate(IDS):
        up, header = (special or {}).get(index, ("", ""))
        target.migration(migration_id, f"CREATE TABLE t{index} (id INTEGER);\n{up}", f"DROP TABLE t{index};", header)


def tables(target: Target) -> list[int]:
    """The indexes of the ``t<i>`` tables there are."""
    return sorted(int(name[1:]) for name in target.tables() if name.startswith("t") and name[1:].isdigit())


def applied(target: Target) -> list[int]:
    return [IDS.index(migration_id) for migration_id in target.history()]


def outcomes(out: str) -> list[str]:
    """The outcome on each progress line: ``OK``, ``FAILED``..."""
    return [line.split("... ")[1].split(" (")[0] for line in out.splitlines() if "... " in line]


def messages_of(target: Target, tmp_path, run) -> list[list[int]]:
    """Which migrations' tables each message that created some created, in order."""
    queries = queries_on_the_wire(target.alias, tmp_path / "wire.trace", run)
    groups = [[i for i in range(len(IDS)) if f"CREATE TABLE t{i} " in query] for query in queries]
    return [group for group in groups if group]


@pg_only
def test_consecutive_migrations_travel_in_one_message_each_its_own_transaction(target, tmp_path):
    write_five(target)
    runner = MigrationRunner(using=target.alias, directory=target.directory)

    groups = messages_of(target, tmp_path, runner.migrate)

    assert groups == [[0, 1, 2, 3, 4]]
    assert applied(target) == tables(target) == [0, 1, 2, 3, 4]


@pg_only
@pytest.mark.parametrize("failing", [0, 2, 4], ids=["first", "middle", "last"])
def test_a_failure_in_a_batch_keeps_those_before_and_runs_none_after(target, failing):
    write_five(target, {failing: ("SELECT 1;\nSELECT 1 / 0;", "")})

    result = target.call("sqlmigrate_up")

    # Line 1 is "-- UP", 2 the CREATE TABLE, 3 the SELECT 1, 4 the division.
    path = target.directory / f"{IDS[failing]}.sql"
    assert result.code == 1
    assert result.err.endswith(
        f"{path}:4: {IDS[failing]} failed: division by zero [rolled back, nothing of it was applied or recorded]"
    )
    assert outcomes(result.out) == ["OK"] * failing + ["FAILED"]
    assert applied(target) == tables(target) == list(range(failing))
    assert not target.query("SELECT 1 FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'")


@pg_only
def test_a_syntax_error_stops_nothing_before_it(target):
    """The server parses a whole message before it runs any of it: the batch is sent again one
    by one, so those before the broken migration are applied as they would be alone."""
    write_five(target, {3: ("SELEC oops;", "")})

    result = target.call("sqlmigrate_up")

    assert result.code == 1
    assert f"{IDS[3]}.sql:3: {IDS[3]} failed: syntax error" in result.err
    assert outcomes(result.out) == ["OK", "OK", "OK", "FAILED"]
    assert applied(target) == tables(target) == [0, 1, 2]


@pg_only
@pytest.mark.parametrize(
    "breaker, header",
    [
        ("SELECT 1;", "-- sqlmigrate: no-transaction\n"),
        ("SET search_path TO public;", ""),
        ("COPY (SELECT 1) TO '/dev/null';", ""),
        ("-- " + "x" * 2000, ""),
    ],
    ids=["no-transaction", "session-settings", "copy", "over-the-bound"],
)
def test_a_migration_that_cannot_travel_with_others_goes_alone(target, tmp_path, settings, breaker, header):
    settings.SQLMIGRATE_BATCH_BYTES = 1500
    write_five(target, {2: (breaker, header)})
    runner = MigrationRunner(using=target.alias, directory=target.directory)

    groups = messages_of(target, tmp_path, runner.migrate)

    assert groups == [[0, 1], [2], [3, 4]]
    assert applied(target) == tables(target) == [0, 1, 2, 3, 4]


@pg_only
def test_batches_off_send_each_migration_alone(target, tmp_path, settings):
    settings.SQLMIGRATE_BATCH_BYTES = 0
    write_five(target)
    runner = MigrationRunner(using=target.alias, directory=target.directory)

    assert messages_of(target, tmp_path, runner.migrate) == [[0], [1], [2], [3], [4]]


def claims_in(message: str) -> list[str]:
    """The newest history id each block of a batch's message claims the history holds."""
    versioned = r"(?: WHERE substr\(id, 1, 3\) <> 'R__')?"  # the newest versioned row: repeatables' rows apart
    return re.findall(rf"COALESCE\(\(SELECT max\(id\) FROM [^)]*?{versioned}\), ''\) = '([^']*)'", message)


@pg_only
def test_each_block_of_a_batch_claims_the_history_the_blocks_before_it_leave(target, tmp_path):
    """Block k takes the run lock for its transaction and expects the history as blocks 0..k-1
    leave it: on the way up their ids added, on the way down removed."""
    write_five(target)
    runner = MigrationRunner(using=target.alias, directory=target.directory)

    [up] = [
        q for q in queries_on_the_wire(target.alias, tmp_path / "up.trace", runner.migrate) if "CREATE TABLE t" in q
    ]
    sent = queries_on_the_wire(target.alias, tmp_path / "down.trace", lambda: runner.rollback(everything=True))
    [down] = [q for q in sent if "DROP TABLE t" in q]

    assert up.count("pg_advisory_xact_lock") == 5 and claims_in(up) == ["", *IDS[:4]]
    assert down.count("pg_advisory_xact_lock") == 5 and claims_in(down) == IDS[::-1]
    assert applied(target) == tables(target) == []


@pg_only
def test_a_migration_another_runner_recorded_meanwhile_is_skipped_in_a_batch(target):
    """Migration 1 writes migration 2's history row (its checksum), as a runner that got past the
    lock would: 2's claim finds the row, 2 does nothing and 3 and 4 do not run in that message;
    the run reads the history again and applies 3 and 4."""
    write_five(target)
    done = checksum((target.directory / f"{IDS[2]}.sql").read_text())
    target.migration(
        IDS[1],
        "CREATE TABLE t1 (id INTEGER);\n"
        f"INSERT INTO schema_migrations (id, name, checksum) VALUES ('{IDS[2]}', 't2', '{done}');",
        "DROP TABLE t1;",
    )

    result = ok(target.call("sqlmigrate_up"))

    assert f"Applying {IDS[2]}... SKIPPED (done by another runner)" in result.out
    assert applied(target) == [0, 1, 2, 3, 4] and tables(target) == [0, 1, 3, 4]


@pg_only
def test_down_travels_in_one_message(target, tmp_path):
    write_five(target)
    ok(target.call("sqlmigrate_up"))
    runner = MigrationRunner(using=target.alias, directory=target.directory)

    queries = queries_on_the_wire(target.alias, tmp_path / "wire.trace", lambda: runner.rollback(everything=True))

    assert [sum(f"DROP TABLE t{i};" in query for i in range(5)) for query in queries if "DROP TABLE" in query] == [5]
    assert applied(target) == tables(target) == []


@pg_only
def test_a_rollback_another_runner_did_meanwhile_is_skipped_in_a_batch(target):
    """Migration 3's DOWN removes migration 2's history row, as a runner that got past the lock
    would: 2's block finds its row gone before its DOWN runs, and is rolled back."""
    write_five(target)
    target.migration(
        IDS[3], "CREATE TABLE t3 (id INTEGER);", f"DROP TABLE t3;\nDELETE FROM schema_migrations WHERE id = '{IDS[2]}';"
    )
    ok(target.call("sqlmigrate_up"))

    result = ok(target.call("sqlmigrate_down", "--all"))

    assert outcomes(result.out) == ["OK", "OK", "SKIPPED", "OK", "OK"]
    assert applied(target) == [] and tables(target) == [2]


@pg_only
def test_a_failure_on_the_way_down_keeps_those_before_and_runs_none_after(target):
    write_five(target)
    target.migration(IDS[1], "CREATE TABLE t1 (id INTEGER);", "DROP TABLE t1;\nSELECT 1 / 0;")
    ok(target.call("sqlmigrate_up"))

    result = target.call("sqlmigrate_down", "--all")

    assert result.code == 1
    assert result.err.endswith(
        f"{IDS[1]}.sql:5: {IDS[1]} failed: division by zero [rolled back, nothing of it was applied or recorded]"
    )
    assert outcomes(result.out) == ["OK", "OK", "OK", "FAILED"]
    assert applied(target) == tables(target) == [0, 1]


@pg_only
@pytest.mark.parametrize(
    "signum, code, how", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_mid_batch_reports_those_committed_and_rolls_back_the_one_running(target, signum, code, how):
    write_five(target, {2: ("SELECT pg_sleep(30);", "")})
    runner = spawn(target, "sqlmigrate_up")
    out = Output(runner.stdout)
    out.wait_for(f"Applying {IDS[2]}...")
    wait_until(lambda: bool(target.query("SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'")))
    assert outcomes("".join(out.chunks)) == ["OK", "OK"]  # the running one's line is open

    runner.send_signal(signum)
    err = runner.stderr.read()  # type: ignore[union-attr]
    runner.wait(timeout=60)

    assert runner.returncode == code
    assert err.strip().splitlines() == [
        f"CommandError: {target.directory / IDS[2]}.sql: {IDS[2]} interrupted ({how}) "
        "[rolled back, nothing of it was applied or recorded]"
    ]
    assert outcomes(out.text) == ["OK", "OK", "INTERRUPTED"]
    assert applied(target) == tables(target) == [0, 1]
    assert not target.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory'")


@pg_only
def test_a_lock_timeout_in_a_batch_is_retried_from_that_migration(target, tmp_path):
    target.query("CREATE TABLE held (id INTEGER)")
    write_five(target, {2: ("ALTER TABLE held ADD COLUMN b INTEGER;", "-- sqlmigrate: lock-timeout=100ms\n")})
    holder = psycopg.connect(target.url)
    holder.execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(1.2, holder.rollback)
    release.start()
    runner = MigrationRunner(using=target.alias, directory=target.directory, retries=5)

    try:
        groups = messages_of(target, tmp_path, runner.migrate)
    finally:
        release.join()
        holder.close()

    assert groups[0] == [0, 1, 2, 3, 4] and len(groups) > 1
    assert all(group == [2, 3, 4] for group in groups[1:])
    assert applied(target) == tables(target) == [0, 1, 2, 3, 4]
    assert target.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'held'") == [(2,)]


@pg_only
def test_fixed_round_trips_of_a_no_op_up_and_of_status(target):
    """Connection included, as the proxy counts them (its start-up steps and its goodbye), with
    the server's time zone Django's, so that Django sends none."""
    write_five(target)
    ok(target.call("sqlmigrate_up"))
    port = int(target.url.rsplit(":", 1)[1].split("/")[0])

    with LatencyProxy("127.0.0.1", port, rtt_ms=0) as proxy:
        target.url = proxy.url(target.url) + "?options=-c%20timezone%3DUTC"
        counts = {}
        for command in ("sqlmigrate_up", "sqlmigrate_status"):
            proxy.reset()
            assert target.manage(command).returncode == 0
            counts[command] = proxy.round_trips

    assert counts == {"sqlmigrate_up": 6, "sqlmigrate_status": 4}


@pg_only
def test_a_tenants_migrations_travel_in_one_message_in_its_schema(target, tmp_path):
    target.query("CREATE SCHEMA tenant_a")
    write_five(target)
    runner = MigrationRunner(using=target.alias, directory=target.directory, schema="tenant_a")

    groups = messages_of(target, tmp_path, runner.migrate)

    assert groups == [[0, 1, 2, 3, 4]]
    in_schema = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'tenant_a' ORDER BY 1"
    assert [name for (name,) in target.query(in_schema)] == ["schema_migrations", "t0", "t1", "t2", "t3", "t4"]
    assert len(target.query("SELECT id FROM tenant_a.schema_migrations")) == 5 and tables(target) == []


@pg_only
def test_a_missing_tenant_schema_found_with_the_lock_lets_the_lock_go(target):
    write_five(target)
    runner = MigrationRunner(using=target.alias, directory=target.directory, schema="tenant_gone")

    with pytest.raises(MissingSchema):
        runner.migrate()

    assert not target.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory'")


@pg_only
def test_a_search_path_without_a_schema_leaves_no_transaction_the_lock_began(target):
    """The lock's first message travels with the schema question (one round trip less): when
    there is no schema, the transaction it began is rolled back and no lock is taken."""
    write_five(target)
    connection = connections[target.alias]
    with connection.cursor() as cursor:
        cursor.execute("SET search_path TO no_such_schema")
    runner = MigrationRunner(using=target.alias, directory=target.directory)

    with pytest.raises(ConfigurationError, match="names no existing schema"):
        runner.migrate()

    assert connection.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert not target.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory'")
    with connection.cursor() as cursor:
        cursor.execute("RESET search_path")
    runner.migrate()
    assert applied(target) == tables(target) == [0, 1, 2, 3, 4]


@pg_only
def test_a_recreate_repeatables_migration_and_the_repeatables_break_a_batch(target, tmp_path):
    """``up`` batches the runs of plain versioned migrations; a migration with
    ``recreate-repeatables`` (with the views it re-creates) and each repeatable go in a
    transaction of their own between them, each claiming the history the ones before left."""
    target.migration(IDS[0], "CREATE TABLE t0 (id INTEGER);", "DROP TABLE t0;")
    target.write("R__v0.sql", "DROP VIEW IF EXISTS v0;\nCREATE VIEW v0 AS SELECT id FROM t0;\n")
    ok(target.call("sqlmigrate_up"))
    for index in range(1, 5):
        up = "ALTER TABLE t0 ALTER COLUMN id TYPE bigint;" if index == 2 else ""
        header = "-- sqlmigrate: recreate-repeatables\n" if index == 2 else ""
        target.migration(IDS[index], f"CREATE TABLE t{index} (id INTEGER);\n{up}", f"DROP TABLE t{index};", header)
    target.write("R__w.sql", "DROP VIEW IF EXISTS w;\nCREATE VIEW w AS SELECT id FROM t4;\n")
    runner = MigrationRunner(using=target.alias, directory=target.directory)

    groups = messages_of(target, tmp_path, runner.migrate)

    assert groups == [[1], [2], [3, 4]]
    assert target.history() == [*IDS, "R__v0", "R__w"]
    assert tables(target) == [0, 1, 2, 3, 4]
    assert target.query("SELECT data_type FROM information_schema.columns WHERE table_name = 'v0'") == [("bigint",)]
    assert runner.migrate() == []

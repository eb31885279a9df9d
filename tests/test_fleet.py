"""The fleet engine on a real PostgreSQL: a tenant's runner (its schema first on the search path,
its own history and lock, the session put back), reading every tenant's history at once, the
parallel run (jobs, connections, keep-going), shards, new tenants; SQLite says tenants are
PostgreSQL's in one line."""

from __future__ import annotations

import os
import threading
import time
from urllib.parse import urlsplit

import psycopg
import pytest
from django.db import connections

from benchmarks.latency_proxy import LatencyProxy
from sqlmigrate_app.backends.postgresql import advisory_lock_key
from sqlmigrate_app.directory import load_directory
from sqlmigrate_app.errors import ConfigurationError, MissingSchema, SqlMigrateError
from sqlmigrate_app.executor import Action
from sqlmigrate_app.fleet import FleetReporter, Outcome, Up, migrate_tenant, run_fleet
from sqlmigrate_app.runner import MigrationRunner
from sqlmigrate_app.tenants import Selection, Shard, Target, read_histories, select_targets, tenant_statuses

from .support import fleet as fleet_support
from .support.fleet import TenantFleet, make_fleet
from .support.target import register_alias, unregister_alias

postgresql = pytest.mark.parametrize("target", ["postgresql"], indirect=True)


@pytest.fixture
def fleet(target, settings, tmp_path) -> TenantFleet:
    return make_fleet(target, settings, tmp_path)


def tenants_of(fleet: TenantFleet, *schemas: str) -> list[Target]:
    return [Target(fleet.target.alias, schema) for schema in schemas]


# A tenant's runner ------------------------------------------------------------------------------


@postgresql
def test_a_tenants_migrations_run_in_its_schema_with_the_shared_schema_after_it(fleet):
    fleet.target.migration(
        "20240101000000_shared",
        "CREATE TABLE customers (id int PRIMARY KEY);\n"
        "CREATE FUNCTION next_token() RETURNS text LANGUAGE sql AS 'SELECT 1';",
    )
    assert MigrationRunner(fleet.target.alias, directory=fleet.target.directory).migrate()
    fleet.create("tenant_a", "tenant_b")
    fleet.migration(
        "20240101000000_orders",
        "CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers, token text DEFAULT next_token());",
        "DROP TABLE orders;",
    )

    for schema in ("tenant_a", "tenant_b"):
        MigrationRunner(fleet.target.alias, schema=schema).migrate()

    assert fleet.tables("tenant_a") == fleet.tables("tenant_b") == {"orders"}
    assert "orders" not in fleet.target.tables()
    assert fleet.history("tenant_a") == fleet.history("tenant_b") == ["20240101000000_orders"]
    assert fleet.checksums("tenant_a") == {m.id: m.checksum for m in load_directory(fleet.directory).migrations}
    columns = (
        "SELECT column_name, data_type, character_maximum_length, is_nullable FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = 'schema_migrations' ORDER BY 1"
    )
    assert fleet.target.query(columns, ["tenant_a"]) == fleet.target.query(columns, ["public"])


@postgresql
def test_sql_that_names_its_own_schema_reads_it_from_a_setting_or_current_schema(fleet):
    role = f"fleet_app_{os.getpid()}"
    fleet.create("tenant_a")
    fleet.target.query(f"CREATE ROLE {role}")
    fleet.migration(
        "20240101000000_grant",
        "CREATE TABLE things (id int);\n"
        f"DO $$ BEGIN EXECUTE format('GRANT USAGE ON SCHEMA %I TO {role}',\n"
        "  current_setting('sqlmigrate.schema')); END $$;\n"
        "CREATE TABLE seen AS SELECT current_setting('sqlmigrate.schema') AS setting, current_schema() AS current;",
    )

    try:
        MigrationRunner(fleet.target.alias, schema="tenant_a").migrate()

        assert fleet.target.query("SELECT setting, current FROM tenant_a.seen") == [("tenant_a", "tenant_a")]
        assert fleet.target.query(f"SELECT has_schema_privilege('{role}', 'tenant_a', 'USAGE')") == [(True,)]
    finally:
        fleet.target.query(f"DROP OWNED BY {role}; DROP ROLE {role}")


@postgresql
def test_the_session_is_put_back_between_tenants(fleet):
    fleet.create("tenant_a", "tenant_b")
    fleet.migration("20240101000000_sets", "SET search_path = pg_catalog; SET statement_timeout = '7s';")
    fleet.migration(
        "20240102000000_no_transaction", "CREATE TABLE late (id int);", header="-- sqlmigrate: no-transaction\n"
    )
    before = fleet.target.query("SELECT current_setting('search_path'), current_setting('statement_timeout')")

    for schema in ("tenant_a", "tenant_b"):
        MigrationRunner(fleet.target.alias, schema=schema).migrate()
        after = fleet.target.query("SELECT current_setting('search_path'), current_setting('statement_timeout')")
        assert after == before
        assert fleet.target.query("SELECT current_setting('sqlmigrate.schema', true)") in ([("",)], [(None,)])

    assert fleet.tables("tenant_a") == fleet.tables("tenant_b") == {"late"}


@postgresql
def test_a_tenant_takes_a_lock_of_its_own(fleet):
    fleet.create("tenant_a", "tenant_b")
    fleet.migration("20240101000000_t", "CREATE TABLE t (id int);")
    holder = psycopg.connect(fleet.target.url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [advisory_lock_key("tenant_a", "schema_migrations")])

    MigrationRunner(fleet.target.alias, schema="tenant_b", lock_wait_timeout=5).migrate()  # not held up
    with pytest.raises(SqlMigrateError, match="held the migration lock"):
        MigrationRunner(fleet.target.alias, schema="tenant_a", lock_wait_timeout=0.2).migrate()

    holder.close()
    assert fleet.history("tenant_b") == ["20240101000000_t"]
    assert not fleet.has_history("tenant_a")


@postgresql
def test_a_missing_schema_is_one_line_and_is_never_created(fleet):
    fleet.migration("20240101000000_t", "CREATE TABLE t (id int);")

    with pytest.raises(MissingSchema) as raised:
        MigrationRunner(fleet.target.alias, schema="tenant_nope").migrate()

    assert str(raised.value).startswith("database 'target': schema 'tenant_nope' does not exist;")
    assert fleet.target.query("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_nope'") == [(0,)]


@postgresql
@pytest.mark.parametrize("name", ['a"b', "pg_toast", "x" * 64, "", "a b", "a;b"])
def test_a_schema_name_sqlmigrate_does_not_take_is_refused_in_one_line(fleet, name):
    with pytest.raises(ConfigurationError, match="is not a tenant schema name"):
        MigrationRunner(fleet.target.alias, schema=name)


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_tenants_on_sqlite_are_one_line_saying_they_are_postgresqls(target, settings, tmp_path):
    settings.SQLMIGRATE_TENANT_DIR = {target.alias: tmp_path}
    settings.SQLMIGRATE_TENANTS = "tests.fleet_support.tenant_schemas"

    with pytest.raises(ConfigurationError) as raised:
        MigrationRunner(target.alias, schema="tenant_a")
    result = target.call("sqlmigrate_up", tenant=["tenant_a"])

    expected = (
        "database 'target' is SQLite: tenant schemas (SQLMIGRATE_TENANT_DIR, --tenants, --tenant) are a PostgreSQL "
        "feature"
    )
    assert str(raised.value) == expected
    assert (result.code, result.err) == (1, expected)


# Reading every tenant's history at once ---------------------------------------------------------


@postgresql
def test_reading_the_fleet_says_where_each_tenant_stands(fleet):
    fleet.create("tenant_new", "tenant_done", "tenant_behind", "tenant_modified", "tenant_foreign")
    first = fleet.migration("20240101000000_one", "CREATE TABLE one (id int);")
    fleet.migration("20240102000000_two", "CREATE TABLE two (id int);")
    for schema in ("tenant_done", "tenant_modified"):
        MigrationRunner(fleet.target.alias, schema=schema).migrate()
    MigrationRunner(fleet.target.alias, schema="tenant_behind").migrate(to="20240101000000_one")
    fleet.target.query("UPDATE tenant_modified.schema_migrations SET checksum = 'x' WHERE id = '20240101000000_one'")
    fleet.target.query("CREATE TABLE tenant_foreign.schema_migrations (version bigint)")
    schemas = ["tenant_new", "tenant_done", "tenant_behind", "tenant_modified", "tenant_foreign", "tenant_gone"]

    histories = read_histories(fleet.target.alias, schemas, load_directory(fleet.directory))
    statuses = {
        status.target.schema: status
        for status in tenant_statuses(fleet.target.alias, schemas, load_directory(fleet.directory))
    }

    assert histories["tenant_done"].matches and not histories["tenant_behind"].matches
    assert list(histories["tenant_behind"].applied) == ["20240101000000_one"]
    assert {schema: status.state for schema, status in statuses.items()} == {
        "tenant_new": "behind",
        "tenant_done": "up to date",
        "tenant_behind": "behind",
        "tenant_modified": "modified",
        "tenant_foreign": "history_table",
        "tenant_gone": "error",
    }
    assert statuses["tenant_behind"].pending == ("20240102000000_two",)
    assert statuses["tenant_modified"].modified == (first.stem,)
    assert statuses["tenant_done"].as_dict()["applied"] == 2


@postgresql
def test_the_schema_of_the_shared_history_cannot_be_a_tenant(fleet):
    with pytest.raises(ConfigurationError, match="schema 'public' holds the shared set's history"):
        read_histories(fleet.target.alias, ["tenant_a", "public"], load_directory(fleet.directory))


def round_trips_of_a_no_op_up(fleet: TenantFleet, proxy: LatencyProxy) -> int:
    """The round trips of ``up --tenants`` through the proxy on a fleet with nothing to do."""
    assert {r.outcome for r in run_fleet(select_targets(["target"], Selection(shared=False)), Up())} <= {
        Outcome.APPLIED,
        Outcome.UP_TO_DATE,
    }
    connections["proxied"].close()
    proxy.reset()
    results = run_fleet(select_targets(["proxied"], Selection(shared=False)), Up())
    assert {result.outcome for result in results} == {Outcome.UP_TO_DATE}
    return proxy.round_trips


@postgresql
def test_a_fleet_with_nothing_to_do_costs_the_same_round_trips_at_5_tenants_or_40(fleet, django_db_blocker, settings):
    fleet.migration("20240101000000_one", "CREATE TABLE one (id int);")
    fleet.migration("20240102000000_two", "CREATE TABLE two (id int);")
    settings.SQLMIGRATE_TENANT_DIR = {"target": fleet.directory, "proxied": fleet.directory}
    address = urlsplit(fleet.target.url)
    with LatencyProxy(address.hostname or "", address.port or 5432, rtt_ms=0) as proxy, django_db_blocker.unblock():
        register_alias("proxied", proxy.url(fleet.target.url))
        try:
            fleet.create(*[f"tenant_{n:02d}" for n in range(5)])
            at_5 = round_trips_of_a_no_op_up(fleet, proxy)
            fleet.create(*[f"tenant_{n:02d}" for n in range(5, 40)])
            at_40 = round_trips_of_a_no_op_up(fleet, proxy)
        finally:
            unregister_alias("proxied")

    assert at_5 == at_40
    assert at_40 < 20  # connecting, the tenant list, the catalog, the rows: none of it once per tenant


# The parallel run --------------------------------------------------------------------------------


class Recorder(FleetReporter):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.thread_ids: set[int] = set()

    def started(self, target: Target) -> None:
        self.events.append(("started", str(target)))
        self.thread_ids.add(threading.get_ident())

    def finished(self, result) -> None:
        self.events.append((str(result.outcome), str(result.target)))
        self.thread_ids.add(threading.get_ident())


@postgresql
def test_the_shared_set_goes_first_then_every_tenant_each_with_its_history(fleet):
    fleet.target.migration("20240101000000_shared", "CREATE TABLE plans (id int PRIMARY KEY);")
    fleet.migration("20240101000000_accounts", "CREATE TABLE accounts (plan int REFERENCES plans);")
    fleet.create(*[f"tenant_{n}" for n in range(6)])
    recorder = Recorder()

    results = run_fleet(
        select_targets([fleet.target.alias], Selection()),
        Up(),
        jobs=3,
        reporter=recorder,
        directory=fleet.target.directory,
    )

    assert [str(result.target) for result in results] == ["target", *[f"target:tenant_{n}" for n in range(6)]]
    assert {result.outcome for result in results} == {Outcome.APPLIED}
    assert recorder.events[:2] == [("started", "target"), ("applied", "target")]
    assert recorder.thread_ids == {threading.get_ident()}  # the reporter is called on the fleet's thread only
    for n in range(6):
        assert fleet.history(f"tenant_{n}") == ["20240101000000_accounts"]
    assert results[1].as_dict() == {
        "database": "target",
        "tenant": "tenant_0",
        "outcome": "applied",
        "applied": ["20240101000000_accounts"],
        "rolled_back": [],
        "error": None,
    }


@postgresql
def test_a_failing_tenant_rolls_back_only_its_migration_and_stops_new_ones_unless_keep_going(fleet):
    fleet.create("tenant_a", "tenant_b", "tenant_c", "tenant_d")
    fleet.target.query("CREATE TABLE tenant_b.two (id int)")  # tenant_b's second migration will fail
    fleet.migration("20240101000000_one", "CREATE TABLE one (id int);")
    fleet.migration("20240102000000_two", "INSERT INTO one VALUES (1);\nCREATE TABLE two (id int);")
    targets = select_targets([fleet.target.alias], Selection(shared=False))

    results = {str(r.target): r for r in run_fleet(targets, Up(), jobs=1)}

    assert {name: str(r.outcome) for name, r in results.items()} == {
        "target:tenant_a": "applied",
        "target:tenant_b": "failed",
        "target:tenant_c": "not started",
        "target:tenant_d": "not started",
    }
    failure = results["target:tenant_b"]
    assert failure.ids(Action.APPLIED) == ["20240101000000_one"]
    assert failure.as_dict()["error"] == {
        "file": str(fleet.directory / "20240102000000_two.sql"),
        "line": 3,
        "message": failure.error and str(failure.error),
    }
    assert fleet.history("tenant_b") == ["20240101000000_one"]
    assert fleet.target.query("SELECT count(*) FROM tenant_b.one") == [(0,)]  # its INSERT was rolled back
    assert not fleet.has_history("tenant_c")

    again = {str(r.target): str(r.outcome) for r in run_fleet(targets, Up(), jobs=1, keep_going=True)}

    assert again == {
        "target:tenant_a": "up to date",
        "target:tenant_b": "failed",
        "target:tenant_c": "applied",
        "target:tenant_d": "applied",
    }
    for schema in ("tenant_a", "tenant_c", "tenant_d"):
        assert fleet.history(schema) == ["20240101000000_one", "20240102000000_two"]
        assert fleet.tables(schema) == {"one", "two"}


@postgresql
def test_jobs_never_open_more_connections_than_the_server_allows(fleet):
    role = f"fleet_limited_{os.getpid()}"
    schemas = fleet.create(*[f"tenant_{n}" for n in range(8)])
    fleet.migration("20240101000000_slow", "SELECT pg_sleep(0.3);\nCREATE TABLE t (id int);")
    fleet.target.query(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 3")
    fleet.target.query(f"GRANT USAGE, CREATE ON SCHEMA {', '.join(schemas)} TO {role}")
    fleet.target.env["DATABASE_URL"] = fleet.target.url.replace("postgres@", f"{role}@")
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        with psycopg.connect(fleet.target.url, autocommit=True) as watcher:
            while not done.is_set():
                query = "SELECT count(*) FROM pg_stat_activity WHERE usename = %s"
                seen.append(watcher.execute(query, [role]).fetchone()[0])  # type: ignore[index]
                time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run = fleet.target.manage("sqlmigrate_up", "--tenants", "--jobs", "8")
        done.set()
        watcher.join()

        assert run.returncode == 0, run.stdout + run.stderr
        assert 2 <= max(seen) <= 3  # tenants at once, never more than the role's CONNECTION LIMIT
        assert all(fleet.history(schema) == ["20240101000000_slow"] for schema in schemas)
    finally:
        done.set()
        fleet.target.query(f"DROP OWNED BY {role}")
        fleet.target.query(f"DROP ROLE {role}")


def test_shards_split_a_fleet_with_no_overlap_and_full_cover():
    names = [f"tenant_{n:04d}" for n in range(1000)]

    shares = [[name for name in names if Shard(k, 4).holds(name)] for k in range(4)]

    assert sorted(sum(shares, [])) == names
    assert all(150 < len(share) < 350 for share in shares)  # a hash, not a split by position
    assert shares == [[name for name in names if Shard(k, 4).holds(name)] for k in range(4)]  # stable


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1", "a/b", "0/0", "1/2/3"])
def test_a_shard_that_cannot_be_is_one_line(text):
    with pytest.raises(ConfigurationError, match=r"^--shard .*: give K/N"):
        Shard.parse(text)


@postgresql
def test_sqlmigrate_tenants_is_called_once_per_database(fleet):
    fleet.create("tenant_a")
    fleet.migration("20240101000000_t", "CREATE TABLE t (id int);")
    fleet_support.CALLS.clear()

    assert fleet.call("sqlmigrate_up").code == 0
    assert fleet.call("sqlmigrate_status", tenants=True).code == 0

    assert fleet_support.CALLS == ["target", "target"]


# New tenants ------------------------------------------------------------------------------------


@postgresql
def test_migrate_tenant_creates_a_new_schema_and_brings_it_up_to_date(fleet):
    fleet.migration("20240101000000_one", "CREATE TABLE one (id int);")
    fleet.migration("20240102000000_two", "CREATE TABLE two (id int);")

    results = migrate_tenant("tenant_new", using=fleet.target.alias)
    again = migrate_tenant("tenant_new", using=fleet.target.alias)

    assert [result.migration.id for result in results] == ["20240101000000_one", "20240102000000_two"]
    assert again == []
    assert fleet.tables("tenant_new") == {"one", "two"}
    assert fleet.history("tenant_new") == ["20240101000000_one", "20240102000000_two"]

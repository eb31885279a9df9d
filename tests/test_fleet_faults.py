"""A fleet under faults, with real ``manage.py`` processes on a real PostgreSQL: SIGKILL at any
moment leaves every tenant's history true to its tables; SIGTERM cancels what runs, rolls it
back and exits 143; two deploys over one fleet apply each tenant's migrations once; runs over
different tenants go on at once, each tenant under its own lock."""

from __future__ import annotations

import signal
import subprocess

import pytest

from .support.fleet import TenantFleet, make_fleet
from .support.processes import Output, spawn, wait_until

pytestmark = pytest.mark.parametrize("target", ["postgresql"], indirect=True)

TENANTS = [f"tenant_{n}" for n in range(6)]
# A migration that waits until the test lets its tenant through (a row naming the tenant's
# schema): each statement of the loop sees the rows committed since, in READ COMMITTED.
BARRIER = (
    "DO $$ BEGIN\n"
    "  WHILE NOT EXISTS (SELECT FROM public.barrier WHERE name = current_setting('sqlmigrate.schema')) LOOP\n"
    "    PERFORM pg_sleep(0.02);\n"
    "  END LOOP;\n"
    "END $$;\n"
)


@pytest.fixture
def fleet(target, settings, tmp_path) -> TenantFleet:
    made = make_fleet(target, settings, tmp_path)
    made.create(*TENANTS)
    target.query("CREATE TABLE public.barrier (name text)")
    return made


def steps(fleet: TenantFleet, count: int, sql: str = "SELECT pg_sleep(0.02);") -> list[str]:
    """``count`` migrations, each creating the table ``step_N`` after ``sql``."""
    ids = []
    for n in range(count):
        path = fleet.migration(
            f"2024010100{n:04d}_step_{n}", f"{sql}\nCREATE TABLE step_{n} (id int);", f"DROP TABLE step_{n};"
        )
        ids.append(path.stem)
    return ids


def recorded(fleet: TenantFleet, schema: str) -> list[str]:
    return fleet.history(schema) if fleet.has_history(schema) else []


def assert_every_history_is_true(fleet: TenantFleet) -> int:
    """Each tenant's history names exactly the migrations whose tables it has; how many rows in all."""
    rows = 0
    for schema in TENANTS:
        history = recorded(fleet, schema)
        assert {f"step_{int(migration_id.rsplit('_', 1)[1])}" for migration_id in history} == fleet.tables(schema), (
            schema
        )
        rows += len(history)
    return rows


def no_runner_left(fleet: TenantFleet) -> bool:
    """No session holds a run lock (a killed runner's sessions end within a second)."""
    locks = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    return fleet.target.query(locks) == [(0,)]


def total_rows(fleet: TenantFleet) -> int:
    return sum(len(recorded(fleet, schema)) for schema in TENANTS)


def test_sigkill_at_any_moment_leaves_every_tenants_history_true(fleet):
    ids = steps(fleet, 10)

    for threshold in (1, 12, 30, 50):
        runner = spawn(fleet.target, "sqlmigrate_up", "--tenants", "--jobs", "3")

        def reached(threshold: int = threshold, runner: subprocess.Popen[str] = runner) -> bool:
            return total_rows(fleet) >= threshold or runner.poll() is not None

        wait_until(reached, what=f"{threshold} rows")
        runner.send_signal(signal.SIGKILL)
        runner.communicate(timeout=60)
        wait_until(lambda: no_runner_left(fleet), what="the killed runner's sessions to end")
        assert_every_history_is_true(fleet)

    finish = fleet.target.manage("sqlmigrate_up", "--tenants", "--jobs", "3")

    assert finish.returncode == 0, finish.stdout + finish.stderr
    assert assert_every_history_is_true(fleet) == len(TENANTS) * len(ids)


def test_sigterm_cancels_the_running_tenants_and_rolls_back_their_migration(fleet):
    steps(fleet, 1)
    fleet.migration("20240102000000_wait", f"{BARRIER}CREATE TABLE waited (id int);")
    runner = spawn(fleet.target, "sqlmigrate_up", "--tenants", "--jobs", "2")
    waiting = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE state = 'active' AND query LIKE '%%public.barrier%%' AND pid <> pg_backend_pid()"
    )
    wait_until(lambda: fleet.target.query(waiting)[0][0] == 2, what="two tenants at the barrier")

    runner.send_signal(signal.SIGTERM)
    out, err = runner.communicate(timeout=60)

    assert runner.returncode == 143, out + err
    assert out == "6 tenants: 2 interrupted, 4 not started.\n"
    assert err.startswith("CommandError: interrupted (SIGTERM): 0 of 6 done, 2 stopped and rolled back")
    assert "Traceback" not in err
    assert [recorded(fleet, schema) for schema in TENANTS] == [["2024010100" + "0000_step_0"]] * 2 + [[]] * 4
    assert all("waited" not in fleet.tables(schema) for schema in TENANTS)
    wait_until(lambda: no_runner_left(fleet), what="no lock left")


def test_two_deploys_over_one_fleet_apply_each_tenants_migrations_once(fleet):
    fleet.migration("20240101000000_log", "CREATE TABLE log (step int NOT NULL);")
    for n in range(1, 10):
        fleet.migration(f"202401010000{n:02d}_step_{n}", f"INSERT INTO log VALUES ({n});")

    deploys = [spawn(fleet.target, "sqlmigrate_up", "--tenants", "--jobs", "2") for _ in range(2)]
    outputs = [deploy.communicate(timeout=300) for deploy in deploys]

    for deploy, (out, err) in zip(deploys, outputs, strict=True):
        assert deploy.returncode == 0, out + err
    for schema in TENANTS:
        assert fleet.target.query(f"SELECT count(*), count(DISTINCT step) FROM {schema}.log") == [(9, 9)]
        assert len(fleet.history(schema)) == 10


def test_runs_over_different_tenants_go_on_at_once(fleet):
    steps(fleet, 1)
    fleet.migration("20240102000000_wait", f"{BARRIER}CREATE TABLE waited (id int);")
    fleet.target.query("INSERT INTO public.barrier VALUES ('tenant_1')")
    first = spawn(fleet.target, "sqlmigrate_up", "--tenant", "tenant_0")
    first_out = Output(first.stdout)
    wait_until(lambda: recorded(fleet, "tenant_0") == ["20240101000000_step_0"], what="tenant_0 at the barrier")

    other = fleet.target.manage("sqlmigrate_up", "--tenant", "tenant_1")
    same = fleet.target.manage("sqlmigrate_up", "--tenant", "tenant_0", "--wait", "0.3")
    still_running = first.poll() is None
    fleet.target.query("INSERT INTO public.barrier VALUES ('tenant_0')")
    first.wait(timeout=60)

    assert still_running
    assert other.returncode == 0 and other.stdout == "1 tenant: 1 applied.\n", other.stdout + other.stderr
    assert same.returncode == 13
    assert "tenant_0: another runner held the migration lock for more than 0.3 s" in same.stderr
    assert first.returncode == 0 and first_out.text == "1 tenant: 1 applied.\n"
    assert fleet.history("tenant_0") == fleet.history("tenant_1") == ["20240101000000_step_0", "20240102000000_wait"]

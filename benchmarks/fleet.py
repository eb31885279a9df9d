#!/usr/bin/env python3
"""Benchmark a fleet of tenant schemas (issue 20): sqlmigrate against django-tenants'
``migrate_schemas`` and a shell loop, on a real PostgreSQL.

    python benchmarks/fleet.py [--tenants 1000] [--dt-tenants 50] [--fresh-tenants 200] [--smoke]

One generated project serves both tools (``benchsite``: django-tenants' engine, router and tenant
model; ``SQLMIGRATE_TENANTS = "sqlmigrate_app.tenants.django_tenants_schemas"``): the tenant set's
SQL is also a Django app's ``RunSQL`` migrations, one per file, so both tools run the same SQL in
the same schemas. Each figure is a whole ``manage.py`` process timed by ``measure.py`` (wall time,
its own peak RSS), as ``run.py`` measures. Workloads, in one run:

- no-op fleet: ``--tenants`` x 50 applied: ``sqlmigrate_up``, ``sqlmigrate_status --tenants``
  beside ``manage.py check`` (Django's start-up); ``migrate_schemas`` with nothing to do at
  ``--dt-tenants`` (it costs per tenant what the issue's reports say: it is measured smaller);
- fresh fleet: ``--fresh-tenants`` x 20 on a fresh copy of one database each: ``sqlmigrate_up
  --tenants --jobs 1, 2, 4, 8``, a shell loop of ``sqlmigrate_up --tenant X``, ``migrate_schemas``
  (standard and multiprocessing executors) and a single-database ``sqlmigrate_up`` of the same
  number of migrations;
- through ``latency_proxy.py`` at 20 ms: the round trips of the no-op fleet, and of two fresh
  fleets of ``LATENCY_TENANTS`` tenants (10 and 20 migrations each) for the cost per migration;
- the admin's fleet pages on the no-op fleet, server-side (``admin_requests.py --fleet``).

Needs django-tenants (``pip install 'django-tenants>=4,<5'``). Writes
``benchmarks/results/DATE-fleet.json``; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from benchmarks.latency_proxy import LatencyProxy  # noqa: E402
from benchmarks.run import Bench, interleaved, machine, older_than_racy, stamp  # noqa: E402
from tests.support.postgres_server import postgres_url  # noqa: E402

NOOP_MIGRATIONS = 50
FRESH_MIGRATIONS = 20
NOOP_ROUNDS = 3
JOBS = (1, 2, 4, 8)
RTT_MS = 20
LATENCY_TENANTS = 20
ADMIN_ROUNDS = 10
PAIR_ROUNDS = 3  # interleaved rounds of --jobs 1 against a single database's up
WORKLOADS = ("noop", "migrate_schemas", "fresh", "pairs", "latency", "admin")

SETTINGS = """
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "benchmark"
DEBUG = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
SHARED_APPS = ["django_tenants", "django.contrib.contenttypes", "customers", "sqlmigrate_app"]
TENANT_APPS = ["tenantapp"]
INSTALLED_APPS = SHARED_APPS + TENANT_APPS
TENANT_MODEL = "customers.Client"
TENANT_DOMAIN_MODEL = "customers.Domain"
DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
DATABASES["default"]["ENGINE"] = "django_tenants.postgresql_backend"
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)
MIGRATION_MODULES = {"tenantapp": os.environ.get("BENCH_TENANT_MIGRATIONS", "tenant_migrations_20")}
TENANT_MULTIPROCESSING_MAX_PROCESSES = 2
SQLMIGRATE_DIR = BASE_DIR / "migrations_sql"
SQLMIGRATE_TENANT_DIR = Path(os.environ.get("BENCH_TENANT_DIR", BASE_DIR / "tenant_sql_20"))
SQLMIGRATE_TENANTS = "sqlmigrate_app.tenants.django_tenants_schemas"
"""

MODELS = """
from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Client(TenantMixin):
    name = models.CharField(max_length=100)
    auto_create_schema = False


class Domain(DomainMixin):
    pass
"""


# The workload ------------------------------------------------------------------------------------


def tenant_sql(index: int) -> tuple[str, str]:
    """Migration ``index`` of a tenant set: every fifth a table, the others a column on it."""
    table = f"t{index - index % 5}"
    if index % 5 == 0:
        return (
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL, "
            "created_at timestamptz NOT NULL DEFAULT now());",
            f"DROP TABLE {table};",
        )
    return f"ALTER TABLE {table} ADD COLUMN c{index} integer;", f"ALTER TABLE {table} DROP COLUMN c{index};"


def write_tenant_set(site: Path, count: int) -> None:
    """``count`` migrations as sqlmigrate files and as a Django app's ``RunSQL`` migrations."""
    sql_dir, module = site / f"tenant_sql_{count}", site / f"tenant_migrations_{count}"
    sql_dir.mkdir()
    module.mkdir()
    (module / "__init__.py").write_text("")
    for i in range(count):
        up, down = tenant_sql(i)
        (sql_dir / f"{stamp(i)}_step_{i}.sql").write_text(f"-- UP\n{up}\n-- DOWN\n{down}\n")
        dependencies = f"[('tenantapp', '{i - 1:04d}_step')]" if i else "[]"
        (module / f"{i:04d}_step.py").write_text(
            "from django.db import migrations\n\n\n"
            "class Migration(migrations.Migration):\n"
            f"    dependencies = {dependencies}\n"
            f"    operations = [migrations.RunSQL({up!r}, {down!r})]\n"
        )


def write_single_set(directory: Path, tenants: int, count: int) -> None:
    """A single database's set of ``tenants`` x ``count`` migrations: the tenant set's SQL, its
    tables renamed per copy."""
    directory.mkdir()
    for copy in range(tenants):
        for i in range(count):
            up, down = (sql.replace(f"t{i - i % 5}", f"t{i - i % 5}_{copy}") for sql in tenant_sql(i))
            n = copy * count + i
            (directory / f"{stamp(n)}_step_{n}.sql").write_text(f"-- UP\n{up}\n-- DOWN\n{down}\n")


def write_site(site: Path, counts: tuple[int, ...]) -> None:
    """The generated project: settings, the tenant model's app, the tenant app, the SQL sets."""
    for package in ("benchsite", "customers", "tenantapp"):
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
    (site / "benchsite" / "settings.py").write_text(SETTINGS)
    (site / "customers" / "models.py").write_text(MODELS)
    (site / "migrations_sql").mkdir()
    (site / "manage.py").write_text(
        "import os, sys\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'benchsite.settings')\n"
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(sys.argv)\n"
    )
    for count in counts:
        write_tenant_set(site, count)


# Running ------------------------------------------------------------------------------------------


class FleetBench(Bench):
    """``run.py``'s bench, its commands run in the generated project."""

    def __init__(self, server_url: str, workdir: Path) -> None:
        super().__init__(server_url, workdir)
        self.site = workdir / "site"
        self.figures: dict[str, object] = {}

    def env(self, migrations: int) -> dict[str, str]:
        return {
            "PYTHONPATH": f"{self.site}{os.pathsep}{ROOT}",
            "DJANGO_SETTINGS_MODULE": "benchsite.settings",
            "BENCH_TENANT_DIR": str(self.site / f"tenant_sql_{migrations}"),
            "BENCH_TENANT_MIGRATIONS": f"tenant_migrations_{migrations}",
        }

    def site_manage(self, key: str, url: str, migrations: int, *args: str) -> float:
        return self.run(key, [sys.executable, str(self.site / "manage.py"), *args], url, self.env(migrations)).seconds

    def untimed(self, url: str, migrations: int, *args: str) -> None:
        env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "0", **self.env(migrations)}
        subprocess.run([sys.executable, str(self.site / "manage.py"), *args], env=env, check=True, cwd=self.site)

    def copy(self, template: str) -> str:
        """A fresh database copied from ``template`` (a URL); its URL."""
        self.counter += 1
        name = f"sqlmigrate_fleet_{os.getpid()}_{self.counter}"
        self.admin.execute(f"CREATE DATABASE {name} TEMPLATE {urlsplit(template).path[1:]}")
        return urlunsplit(urlsplit(self.server_url)._replace(path="/" + name))

    def fleet_template(self, tenants: int) -> str:
        """A database with django-tenants' public tables and ``tenants`` empty tenant schemas,
        each a row of its tenant model."""
        url = self.database()
        self.untimed(url, FRESH_MIGRATIONS, "migrate_schemas", "--shared", "-v", "0")
        names = [f"tenant_{n:04d}" for n in range(tenants)]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("".join(f"CREATE SCHEMA {name};" for name in names))
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO customers_client (schema_name, name) VALUES (%s, %s)", [(n, n) for n in names]
                )
        return url

    def count(self, url: str, sql: str) -> int:
        return int(self.scalar(url, sql))  # type: ignore[arg-type]


def noop_fleet(bench: FleetBench, tenants: int, log: Callable[[str], None], rounds: int = NOOP_ROUNDS) -> str:
    """``tenants`` x 50 applied by ``sqlmigrate_up`` (timed: a fresh fleet at that size), then the
    no-op commands beside Django's start-up, interleaved."""
    m = NOOP_MIGRATIONS
    url = bench.copy(bench.fleet_template(tenants))
    seconds = bench.site_manage("noop:setup_up_jobs_2", url, m, "sqlmigrate_up", "--jobs", "2", "-v", "0")
    applied = bench.count(url, f"SELECT count(*) FROM tenant_{tenants - 1:04d}.schema_migrations")
    assert applied == m, applied
    log(f"  {tenants} x {m} applied by sqlmigrate_up --jobs 2 in {seconds:.1f} s")
    for round_no in range(rounds):
        interleaved(
            round_no,
            partial(bench.site_manage, "noop:django_check", url, m, "check"),
            partial(bench.site_manage, "noop:up", url, m, "sqlmigrate_up"),
            partial(bench.site_manage, "noop:status", url, m, "sqlmigrate_status", "--tenants"),
        )
        log(f"  no-op round {round_no + 1}: {brief(bench, 'noop:')}")
    return url


def migrate_schemas_noop(bench: FleetBench, tenants: int, log: Callable[[str], None]) -> None:
    """django-tenants at ``tenants`` x 50: ``migrate_schemas`` (multiprocessing) applies them,
    then ``migrate_schemas`` with nothing to do, as its users run it on each deploy."""
    m = NOOP_MIGRATIONS
    url = bench.copy(bench.fleet_template(tenants))
    args = ("migrate_schemas", "--executor", "multiprocessing", "-v", "0")
    seconds = bench.site_manage("dt_noop:setup_multiprocessing", url, m, *args)
    assert (
        bench.count(url, f"SELECT count(*) FROM tenant_{tenants - 1:04d}.django_migrations WHERE app = 'tenantapp'")
        == m
    )
    log(f"  migrate_schemas (multiprocessing): {tenants} x {m} applied in {seconds:.1f} s")
    for _ in range(2):
        bench.site_manage("dt_noop:migrate_schemas", url, m, "migrate_schemas", "-v", "0")
    log(f"  migrate_schemas, nothing to do, {tenants} tenants: {brief(bench, 'dt_noop:migrate_schemas')}")


def fresh_fleet(bench: FleetBench, tenants: int, log: Callable[[str], None]) -> None:
    """``tenants`` x 20 on a fresh copy each: sqlmigrate at each ``--jobs`` interleaved with the
    peers, and a single database's up of as many migrations."""
    m = FRESH_MIGRATIONS
    template = bench.fleet_template(tenants)
    single = bench.workdir / "single_set"
    write_single_set(single, tenants, m)
    manage = f"{shlex.quote(sys.executable)} {bench.site / 'manage.py'}"
    loop = " ".join(f"{manage} sqlmigrate_up --tenant tenant_{n:04d} -v 0 || exit 1;" for n in range(tenants))
    last = f"tenant_{tenants - 1:04d}"

    def ours(jobs: int) -> None:
        url = bench.copy(template)
        bench.site_manage(f"fresh:jobs_{jobs}", url, m, "sqlmigrate_up", "--tenants", "--jobs", str(jobs), "-v", "0")
        assert bench.count(url, f"SELECT count(*) FROM {last}.schema_migrations") == m

    def shell_loop() -> None:
        url = bench.copy(template)
        bench.run("fresh:shell_loop", ["bash", "-c", loop], url, bench.env(m))
        assert bench.count(url, f"SELECT count(*) FROM {last}.schema_migrations") == m

    def migrate_schemas(executor: str) -> None:
        url = bench.copy(template)
        args = ("migrate_schemas", "--tenant", "--executor", executor, "-v", "0")
        bench.site_manage(f"fresh:migrate_schemas_{executor}", url, m, *args)
        assert bench.count(url, f"SELECT count(*) FROM {last}.django_migrations WHERE app = 'tenantapp'") == m

    def single_database() -> None:
        url = bench.copy(template)
        bench.site_manage("fresh:single_up", url, m, "sqlmigrate_up", "--shared", "--dir", str(single), "-v", "0")
        assert bench.count(url, "SELECT count(*) FROM public.schema_migrations") == tenants * m

    older_than_racy()
    check = partial(bench.site_manage, "fresh:django_check", template, m, "check")  # Django's start-up
    steps = [
        partial(ours, 1),
        shell_loop,
        check,
        partial(ours, 2),
        partial(migrate_schemas, "standard"),
        check,
        partial(ours, 4),
        partial(migrate_schemas, "multiprocessing"),
        check,
        partial(ours, 8),
        single_database,
    ]
    for step in steps:
        step()
        log(f"  fresh: {brief(bench, 'fresh:', last_only=True)}")


def pairs(bench: FleetBench, tenants: int, log: Callable[[str], None]) -> None:
    """The cost per migration: ``--jobs 1`` over ``tenants`` x 20 against a single database's up of
    as many migrations, and Django's start-up, interleaved, PAIR_ROUNDS times on fresh copies."""
    m = FRESH_MIGRATIONS
    template = bench.fleet_template(tenants)
    single = bench.workdir / "pairs_single_set"
    write_single_set(single, tenants, m)
    older_than_racy()

    def run(key: str, url: str, *args: str) -> float:
        return bench.site_manage(key, url, m, *args)

    for round_no in range(PAIR_ROUNDS):
        fleet_db, single_db = bench.copy(template), bench.copy(template)
        interleaved(
            round_no,
            partial(run, "pairs:jobs_1", fleet_db, "sqlmigrate_up", "--tenants", "--jobs", "1"),
            partial(run, "pairs:django_check", template, "check"),
            partial(run, "pairs:single_up", single_db, "sqlmigrate_up", "--shared", "--dir", str(single)),
        )
        assert bench.count(single_db, "SELECT count(*) FROM public.schema_migrations") == tenants * m
        log(f"  pairs, round {round_no + 1}: {brief(bench, 'pairs:')}")


def latency(bench: FleetBench, noop_url: str, log: Callable[[str], None]) -> None:
    """Round trips through a 20 ms proxy: the no-op fleet's ``up`` and ``status``; fresh fleets of
    LATENCY_TENANTS tenants with 10 and with 20 migrations each, and that fleet with nothing to do."""
    address = urlsplit(bench.server_url)
    template = bench.fleet_template(LATENCY_TENANTS)
    ten = sorted(path.stem for path in (bench.site / f"tenant_sql_{FRESH_MIGRATIONS}").glob("*.sql"))[9]
    with LatencyProxy(address.hostname or "127.0.0.1", address.port or 5432, RTT_MS) as proxy:
        runs: list[tuple[str, str, int, tuple[str, ...]]] = [
            ("noop_up", noop_url, NOOP_MIGRATIONS, ("sqlmigrate_up",)),
            ("noop_status", noop_url, NOOP_MIGRATIONS, ("sqlmigrate_status", "--tenants")),
        ]
        fresh_10, fresh_20 = bench.copy(template), bench.copy(template)
        runs += [
            ("fresh_10", fresh_10, FRESH_MIGRATIONS, ("sqlmigrate_up", "--tenants", "--to", ten)),
            ("fresh_20", fresh_20, FRESH_MIGRATIONS, ("sqlmigrate_up", "--tenants")),
            ("fresh_20_noop", fresh_20, FRESH_MIGRATIONS, ("sqlmigrate_up", "--tenants")),
        ]
        trips: dict[str, dict[str, float]] = {}
        for key, url, m, args in runs:
            proxy.reset()
            seconds = bench.site_manage(f"latency:{key}", proxy.url(url), m, *args, "-v", "0")
            trips[key] = {"round_trips": proxy.round_trips, "seconds": round(seconds, 3)}
            log(f"  {RTT_MS} ms: {key}: {proxy.round_trips} round trips, {seconds:.2f} s")
    per_migration = (trips["fresh_20"]["round_trips"] - trips["fresh_10"]["round_trips"]) / (LATENCY_TENANTS * 10)
    bench.figures["latency"] = {
        "rtt_ms": RTT_MS,
        "tenants": LATENCY_TENANTS,
        "runs": trips,
        "round_trips_per_migration": per_migration,
        "round_trips_per_migration_all_in": trips["fresh_20"]["round_trips"] / (LATENCY_TENANTS * FRESH_MIGRATIONS),
        "round_trips_per_tenant_besides_migrations": (
            trips["fresh_20"]["round_trips"]
            - trips["fresh_20_noop"]["round_trips"]
            - per_migration * LATENCY_TENANTS * FRESH_MIGRATIONS
        )
        / LATENCY_TENANTS,
    }


def admin_pages(bench: FleetBench, url: str, tenants: int, log: Callable[[str], None]) -> None:
    """The admin's fleet pages on the no-op fleet, server-side, each in one process (the demo
    project's admin, its tenants the ``tenant_*`` schemas: ``tests.settings_fleet``): every
    tenant up to date, then every tenant behind by one more file (each history's rows read)."""
    applied = bench.site / f"tenant_sql_{NOOP_MIGRATIONS}"
    behind = bench.workdir / "tenant_sql_behind"
    shutil.copytree(applied, behind)
    (behind / f"{stamp(NOOP_MIGRATIONS)}_one_more.sql").write_text("-- UP\nCREATE TABLE one_more (id int);\n")
    older_than_racy()
    script = [sys.executable, str(ROOT / "benchmarks" / "admin_requests.py"), "--fleet", "--rounds", str(ADMIN_ROUNDS)]
    figures: dict[str, object] = {"tenants": tenants, "migrations": NOOP_MIGRATIONS}
    for case, directory in (("up_to_date", applied), ("behind_by_one", behind)):
        out = bench.workdir / f"admin_{case}.json"
        env = {
            "DJANGO_SETTINGS_MODULE": "tests.settings_fleet",
            "SQLMIGRATE_TEST_TENANT_DIR": str(directory),
            "XDG_CACHE_HOME": str(bench.workdir / "admin_cache"),
        }
        process = bench.run(f"admin:{case}", [*script, "--out", str(out)], url, env)
        timed = json.loads(out.read_text())
        figures[case] = {
            "median_seconds": {page: statistics.median(seconds) for page, seconds in timed["seconds"].items()},
            "html_bytes": timed["html_bytes"],
            "process_rss_mb": round(process.rss_mb, 1),
        }
        log(f"  admin, {case}: {figures[case]}")
    bench.figures["admin"] = figures


def brief(bench: Bench, prefix: str, last_only: bool = False) -> str:
    keys = [key for key in bench.samples if key.startswith(prefix)]
    if last_only:
        keys = keys[-1:]
    return ", ".join(f"{key[len(prefix) :]} {bench.samples[key][-1].seconds:.2f}s" for key in keys)


# Report --------------------------------------------------------------------------------------------


def median(bench: Bench, key: str) -> float | None:
    samples = bench.samples.get(key)
    return statistics.median(s.seconds for s in samples) if samples else None


def targets(bench: FleetBench, tenants: int, fresh_tenants: int) -> list[dict[str, object]]:
    checks: list[dict[str, object]] = []

    def check(name: str, value: float | None, limit: float | None, unit: str) -> None:
        if value is None or limit is None:
            checks.append({"target": name, "value": None, "limit": None, "result": "SKIPPED"})
        else:
            verdict = "PASS" if value <= limit else "FAIL"
            checks.append({"target": name, "value": value, "limit": limit, "unit": unit, "result": verdict})

    startup = median(bench, "noop:django_check")
    for command in ("up", "status"):
        value = median(bench, f"noop:{command}")
        limit = startup + 0.5 if startup is not None else None
        check(f"no-op {command} at {tenants:,} tenants x 50 <= start-up + 0.5 s", value, limit, "s")
    best = min((v for j in JOBS if (v := median(bench, f"fresh:jobs_{j}")) is not None), default=None)
    for peer in ("shell_loop", "migrate_schemas_standard", "migrate_schemas_multiprocessing"):
        ref = median(bench, f"fresh:{peer}")
        ratio = best / ref if best is not None and ref else None
        check(f"fresh {fresh_tenants} x 20, best --jobs <= 0.1 x {peer}", ratio, 0.1, "x")
    source = "pairs" if "pairs:jobs_1" in bench.samples else "fresh"
    fresh_startup, jobs_1, single = (median(bench, f"{source}:{k}") for k in ("django_check", "jobs_1", "single_up"))
    if fresh_startup is not None and jobs_1 is not None and single is not None:
        ratio = (jobs_1 - fresh_startup) / (single - fresh_startup)
        bench.figures["per_migration_ms"] = {
            "jobs_1": 1000 * (jobs_1 - fresh_startup) / (fresh_tenants * FRESH_MIGRATIONS),
            "single_database": 1000 * (single - fresh_startup) / (fresh_tenants * FRESH_MIGRATIONS),
        }
    else:
        ratio = None
    check("per migration at --jobs 1 <= 1.2 x a single database's up (start-up taken off both)", ratio, 1.2, "x")
    rss = [s.rss_mb for key in ("noop:setup_up_jobs_2", "noop:up", "noop:status") for s in bench.samples.get(key, [])]
    check(f"peak RSS at {tenants:,} tenants <= 150 MB", max(rss) if rss else None, 150.0, "MB")
    admin: dict[str, dict[str, dict[str, float]]] = bench.figures.get("admin", {})  # type: ignore[assignment]
    for case in ("up_to_date", "behind_by_one"):
        pages = admin.get(case, {}).get("median_seconds", {})
        for page, limit in (("fleet", 0.150), ("tenant_list", 0.150), ("tenant_detail", 0.050)):
            name = f"admin {page} page, {tenants:,} tenants x 50, {case.replace('_', ' ')} <= {limit * 1000:.0f} ms"
            check(name, pages.get(page), limit, "s")
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=1000, help="tenants of the no-op fleet")
    parser.add_argument("--dt-tenants", type=int, default=1000, help="tenants of migrate_schemas' no-op fleet")
    parser.add_argument("--fresh-tenants", type=int, default=200, help="tenants of the fresh fleet")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script runs")
    parser.add_argument("--only", action="append", choices=WORKLOADS, help="run only this workload (repeatable)")
    parser.add_argument("--out", type=Path, help="JSON result file (default: benchmarks/results/DATE-fleet.json)")
    args = parser.parse_args()
    if args.smoke:
        args.tenants, args.dt_tenants, args.fresh_tenants = 12, 3, 6
    only = set(args.only or WORKLOADS)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    with postgres_url() as (server_url, how), tempfile.TemporaryDirectory(prefix="sqlmigrate-fleet-") as workdir:
        if server_url is None:
            log(f"no PostgreSQL: {how}")
            return 2
        log(f"PostgreSQL: {how}; load average {os.getloadavg()}")
        bench = FleetBench(server_url, Path(workdir))
        write_site(bench.site, (FRESH_MIGRATIONS, NOOP_MIGRATIONS))
        bench.untimed(server_url, FRESH_MIGRATIONS, "makemigrations", "customers", "-v", "0")
        if only & {"noop", "latency", "admin"}:
            log(f"no-op fleet, {args.tenants} tenants...")
            noop_url = noop_fleet(bench, args.tenants, log, NOOP_ROUNDS if "noop" in only else 0)
        if "migrate_schemas" in only:
            log(f"migrate_schemas with nothing to do, {args.dt_tenants} tenants...")
            migrate_schemas_noop(bench, args.dt_tenants, log)
        if "fresh" in only:
            log(f"fresh fleet, {args.fresh_tenants} tenants x {FRESH_MIGRATIONS}...")
            fresh_fleet(bench, args.fresh_tenants, log)
        if "pairs" in only:
            log(f"--jobs 1 against a single database, {args.fresh_tenants} x {FRESH_MIGRATIONS}...")
            pairs(bench, args.fresh_tenants, log)
        if "latency" in only:
            log(f"through a {RTT_MS} ms proxy...")
            latency(bench, noop_url, log)
        if "admin" in only:
            log("admin fleet pages...")
            admin_pages(bench, noop_url, args.tenants, log)
        info = machine(server_url)
        bench.admin.close()
    checks = targets(bench, args.tenants, args.fresh_tenants)
    medians = {key: median(bench, key) for key in bench.samples}
    rss = {key: max(s.rss_mb for s in samples) for key, samples in bench.samples.items()}
    for key in medians:
        print(f"{key:<45} {medians[key]:8.3f} s  ({rss[key]:.0f} MB)")
    print(json.dumps(bench.figures, indent=2))
    for item in checks:
        value = "-" if item["value"] is None else f"{item['value']:.3f} {item['unit']} (limit {item['limit']:.3f})"
        print(f"{item['result']:<8}{item['target']}: {value}")
    elapsed = time.perf_counter() - started
    print(f"\n{info['postgresql']}; {info['cpus']} CPUs, {info['memory']}; took {elapsed:.0f} s")
    now = datetime.now(timezone.utc)
    suffix = ("-smoke" if args.smoke else "") + ("-only-" + "-".join(sorted(only)) if args.only else "")
    out = args.out or ROOT / "benchmarks" / "results" / f"{now:%Y-%m-%d}-fleet{suffix}.json"
    out.write_text(
        json.dumps(
            {
                "date": now.isoformat(timespec="seconds"),
                "sizes": {"tenants": args.tenants, "dt_tenants": args.dt_tenants, "fresh_tenants": args.fresh_tenants},
                "only": sorted(only),
                "load_average": os.getloadavg(),
                "machine": info,
                "seconds_total": round(elapsed, 1),
                "targets": checks,
                "figures": bench.figures,
                "medians": medians,
                "samples": {
                    key: [{"seconds": round(s.seconds, 4), "rss_mb": round(s.rss_mb, 1)} for s in samples]
                    for key, samples in bench.samples.items()
                },
            },
            indent=2,
        )
        + "\n"
    )
    log(f"wrote {out}")
    return 1 if any(item["result"] == "FAIL" for item in checks) else 0


if __name__ == "__main__":
    sys.exit(main())

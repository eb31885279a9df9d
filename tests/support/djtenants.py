"""The django-tenants project of ``tests/djtenants`` on a database of the test server, run in real
``manage.py`` processes (django-tenants' connection wrapper, router and ``migrate_schemas`` are
the real ones there; this process keeps Django's plain settings), and what the tests ask of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from .target import ROOT

SETTINGS = "tests.djtenants.settings"

# Tenants created through django-tenants' model, as its users create them: the public tenant
# first (its documentation has every project make one), then each with a domain.
CREATE_TENANTS = """
from tests.djtenants.customers.models import Client, Domain
for name in {names!r}:
    client = Client(schema_name=name, name=name.title())
    client.save(verbosity=0)
    Domain(domain=name + ".localhost", tenant=client).save()
"""


@dataclass
class DjTenantsProject:
    """A django-tenants project's database (``url``) and its shared and tenant sets' directories."""

    url: str
    shared: Path
    tenant: Path

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python manage.py ARGS`` with the project's settings, in a real process."""
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "DATABASE_URL": self.url,
            "SQLMIGRATE_TEST_DIR": str(self.shared),
            "SQLMIGRATE_TEST_TENANT_DIR": str(self.tenant),
        }
        command = [sys.executable, str(ROOT / "manage.py"), *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)

    def python(self, code: str) -> Any:
        """Run ``code`` in the project (``manage.py shell -c``); the JSON of its last line of output."""
        run = self.manage("shell", "--no-imports", "-c", code)
        assert run.returncode == 0, run.stdout + run.stderr
        lines = run.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else None

    def create_tenants(self, *names: str) -> subprocess.CompletedProcess[str]:
        """Save a tenant model row for each of ``names`` (django-tenants creates and syncs its schema)."""
        return self.manage("shell", "--no-imports", "-c", CREATE_TENANTS.format(names=list(names)))

    def migration(self, directory: Path, migration_id: str, up: str, down: str = "") -> Path:
        path = directory / f"{migration_id}.sql"
        path.write_text(f"-- UP\n{up}\n-- DOWN\n{down}\n", encoding="utf-8")
        return path

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as connection:
            cursor = connection.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def tables(self, schema: str) -> set[str]:
        return {row[0] for row in self.query("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])}

    def history(self, schema: str) -> list[str]:
        return [row[0] for row in self.query(f'SELECT id FROM "{schema}".schema_migrations ORDER BY id')]

    def schemas(self) -> set[str]:
        rows = self.query("SELECT nspname FROM pg_namespace WHERE nspname !~ '^(pg_|information_schema)'")
        return {row[0] for row in rows}

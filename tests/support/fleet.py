"""Tenants for the fleet tests: plain PostgreSQL schemas the tests create, listed by a
``SQLMIGRATE_TENANTS`` function as django-tenants' lists its tenant model's rows; the ``fleet``
fixture (a ``target`` database with a tenant set) and what the tests ask of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connections

from .target import Target

# Each call of tenant_schemas, by database alias: SQLMIGRATE_TENANTS is called once per command.
CALLS: list[str] = []


def tenant_schemas(alias: str) -> list[str]:
    """Every schema of ``alias`` whose name starts with ``tenant_``."""
    CALLS.append(alias)
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_%%' ORDER BY 1")
        return [row[0] for row in cursor.fetchall()]


@dataclass
class TenantFleet:
    """A ``target`` database whose tenants are the schemas named ``tenant_*``, and its tenant set."""

    target: Target
    directory: Path

    def create(self, *schemas: str) -> list[str]:
        for schema in schemas:
            self.target.query(f'CREATE SCHEMA "{schema}"')
        return list(schemas)

    def migration(self, migration_id: str, up: str, down: str = "", header: str = "") -> Path:
        path = self.directory / f"{migration_id}.sql"
        path.write_text(f"{header}-- UP\n{up}\n-- DOWN\n{down}\n", encoding="utf-8")
        return path

    def history(self, schema: str) -> list[str]:
        return [row[0] for row in self.target.query(f'SELECT id FROM "{schema}".schema_migrations ORDER BY id')]

    def checksums(self, schema: str) -> dict[str, str]:
        return dict(self.target.query(f'SELECT id, checksum FROM "{schema}".schema_migrations'))

    def tables(self, schema: str) -> set[str]:
        rows = self.target.query("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])
        return {row[0] for row in rows} - {"schema_migrations"}

    def has_history(self, schema: str) -> bool:
        return bool(self.target.query("SELECT to_regclass(%s)", [f'"{schema}".schema_migrations'])[0][0])

    def call(self, command: str, *args: str, **options: Any) -> Any:
        return self.target.call(command, *args, **options)


def make_fleet(target: Target, settings: Any, tmp_path: Path) -> TenantFleet:
    """``target`` (PostgreSQL: parametrize it so) with a tenant set, the ``tenant_*`` schemas as
    its tenants, in this process and in the ``manage.py`` processes it starts."""
    directory = tmp_path / "tenant_set"
    directory.mkdir()
    settings.SQLMIGRATE_TENANT_DIR = {target.alias: directory}
    settings.SQLMIGRATE_TENANTS = "tests.support.fleet.tenant_schemas"
    target.env.update({"DJANGO_SETTINGS_MODULE": "tests.settings_fleet", "SQLMIGRATE_TEST_TENANT_DIR": str(directory)})
    return TenantFleet(target, directory)

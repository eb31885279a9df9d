"""verify, lint and dump with a tenant set, on a real PostgreSQL: the tenant set is treated once,
in one schema of one throwaway database after the shared set, never once per tenant; ``--shared``
and ``--tenants`` choose; the shared set's schema file leaves the tenants' schemas out."""

from __future__ import annotations

import json

import psycopg
import pytest

from sqlmigrate_app.management.base import EXIT_REHEARSAL

from .support.fleet import TenantFleet, make_fleet

pytestmark = pytest.mark.parametrize("target", ["postgresql"], indirect=True)

TENANTS = ("tenant_a", "tenant_b", "tenant_c", "tenant_d")
ORDERS = "20240101000000_orders"
INDEX = "20240102000000_orders_index"


@pytest.fixture
def fleet(target, settings, tmp_path) -> TenantFleet:
    """Four tenants with the first tenant migration applied, and a second one pending on each;
    the tenant set refers to the shared set's table."""
    made = make_fleet(target, settings, tmp_path)
    target.migration("20240101000000_plans", "CREATE TABLE plans (id int PRIMARY KEY);", "DROP TABLE plans;")
    made.migration(
        ORDERS,
        "CREATE TABLE orders (id int PRIMARY KEY, plan int REFERENCES plans, total int);",
        "DROP TABLE orders;",
    )
    made.create(*TENANTS)
    assert made.call("sqlmigrate_up").code == 0
    made.migration(INDEX, "CREATE INDEX orders_total_idx ON orders (total);", "DROP INDEX orders_total_idx;")
    return made


def schemas_in(fleet: TenantFleet, database: str) -> set[str]:
    """The user schemas of a kept throwaway database, which is then dropped."""
    server = fleet.target.url.rsplit("/", 1)[0]
    try:
        with psycopg.connect(f"{server}/{database}") as connection:
            rows = connection.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'"
            ).fetchall()
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return {row[0] for row in rows}


def test_verify_rehearses_the_tenant_set_once_whatever_the_number_of_tenants(fleet):
    result = fleet.call("sqlmigrate_verify", json=True)

    assert result.code == 0, result.text
    objects = json.loads(result.out)
    # The shared set has nothing pending; the tenant set's pending migration, once (not four times).
    assert [(obj["set"], obj["id"], obj["outcome"]) for obj in objects] == [("tenant", INDEX, "ok")]


def test_verify_tenants_all_rehearses_every_tenant_migration_in_one_schema(fleet):
    result = fleet.call("sqlmigrate_verify", tenants=True, all=True, keep=True)

    assert result.code == 0, result.text
    assert "Verifying 2 migrations in the throwaway database " in result.out
    [kept] = [line.split()[-1].rstrip(".") for line in result.err.splitlines() if line.startswith("Kept")]
    assert schemas_in(fleet, kept) == {
        "public",
        "sqlmigrate_tenant",
    }  # one schema for the tenant set, not one per tenant


def test_verify_of_the_tenant_set_fails_as_a_tenant_would(fleet):
    fleet.migration("20240103000000_broken", "CREATE INDEX broken_idx ON orders (total);", "SELECT 1;")

    result = fleet.call("sqlmigrate_verify", tenants=True)

    assert result.code == EXIT_REHEARSAL, result.text
    assert "20240103000000_broken: FAILED" in result.out
    assert "DOWN left something behind" in result.out


def test_verify_shared_leaves_the_tenant_set_alone(fleet):
    result = fleet.call("sqlmigrate_verify", shared=True)

    assert result.code == 0, result.text
    assert result.out == "No migrations to verify.\n"


def test_lint_lints_the_tenant_sets_files_once(fleet):
    result = fleet.call("sqlmigrate_lint", json=True)

    assert result.code != 0  # CREATE INDEX without CONCURRENTLY
    findings = json.loads(result.out)
    assert {finding["id"] for finding in findings} == {INDEX}
    assert len({(finding["line"], finding["rule"]) for finding in findings}) == len(findings)  # once, not per tenant


def test_lint_shared_lints_the_shared_set_only(fleet):
    result = fleet.call("sqlmigrate_lint", shared=True)

    assert result.code == 0, result.text


def test_dump_writes_the_tenant_sets_schema_beside_the_shared_sets(fleet, settings, tmp_path):
    settings.SQLMIGRATE_SCHEMA_FILE = {fleet.target.alias: str(tmp_path / "schema.sql")}

    result = fleet.call("sqlmigrate_dump")

    assert result.code == 0, result.text
    shared = (tmp_path / "schema.sql").read_text()
    tenant = (tmp_path / "schema.tenant.sql").read_text()
    assert "table public.plans" in shared
    assert "tenant_a" not in shared and "orders" not in shared  # the tenants' schemas are not the shared set's
    assert "table tenant.orders" in tenant and "REFERENCES public.plans(id)" in tenant
    assert "index orders_total_idx: CREATE INDEX orders_total_idx ON tenant.orders" in tenant  # the files' schema
    assert tenant.endswith(f"-- Applied migrations\n{ORDERS}\n{INDEX}\n")

    check = fleet.call("sqlmigrate_dump", check=True)

    assert check.code == 0, check.text


def test_dump_output_names_one_file(fleet, tmp_path):
    refused = fleet.call("sqlmigrate_dump", output=str(tmp_path / "x.sql"))
    tenants = fleet.call("sqlmigrate_dump", tenants=True, output="-")

    assert refused.code == 1
    assert "--output names one file, and a tenant set is configured: add --shared or --tenants" in refused.err
    assert tenants.code == 0 and "table tenant.orders" in tenants.out

"""sqlmigrate_drift over tenants, on a real PostgreSQL: every tenant schema against the rebuild of
its applied state, each distinct state rebuilt once; what drift by hand looks like in one tenant
(an index added, a column dropped), a tenant behind the others, a file changed since it ran on
one tenant, the ignore list, ``--json``, exit 14; the shared set compared without its tenants'
schemas; and ``up --check-drift`` on a fleet."""

from __future__ import annotations

import json

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from sqlmigrate_app.drift_tenants import drift_fleet
from sqlmigrate_app.errors import ProblemKind
from sqlmigrate_app.management.base import EXIT_CODES, EXIT_DRIFT, EXIT_SOME_FAILED
from sqlmigrate_app.tenants import Target

from .support.fleet import TenantFleet, make_fleet

pytestmark = pytest.mark.parametrize("target", ["postgresql"], indirect=True)

TENANTS = ("tenant_a", "tenant_b", "tenant_c")
ORDERS = "20240101000000_orders"
NOTES = "20240102000000_notes"


@pytest.fixture
def fleet(target, settings, tmp_path) -> TenantFleet:
    """A shared table, three tenants with two tenant migrations applied (orders refers to the
    shared plans, a function and a view name their schema's objects), all up to date."""
    made = make_fleet(target, settings, tmp_path)
    target.migration("20240101000000_plans", "CREATE TABLE plans (id int PRIMARY KEY);", "DROP TABLE plans;")
    made.migration(
        ORDERS,
        "CREATE TABLE orders (id int PRIMARY KEY, plan int REFERENCES plans, total int DEFAULT 0, note text);\n"
        "CREATE INDEX orders_plan_idx ON orders (plan);\n"
        "CREATE VIEW big_orders AS SELECT id FROM orders WHERE total > 100;",
        "DROP VIEW big_orders; DROP TABLE orders;",
    )
    made.migration(
        NOTES, "CREATE TABLE notes (id serial PRIMARY KEY, order_id int REFERENCES orders);", "DROP TABLE notes;"
    )
    made.create(*TENANTS)
    assert made.call("sqlmigrate_up").code == 0
    return made


def by_hand(fleet: TenantFleet, *statements: str) -> None:
    for statement in statements:
        fleet.target.query(statement)
    connections[fleet.target.alias].close()


def as_json(fleet: TenantFleet, **options) -> tuple[int, list[dict]]:
    result = fleet.call("sqlmigrate_drift", json=True, **options)
    return result.code, json.loads(result.out)


def tenants_of(objects: list[dict]) -> dict[str, dict]:
    return {obj["tenant"]: obj for obj in objects if obj["tenant"] is not None}


def test_a_fleet_as_its_migrations_left_it_has_not_drifted(fleet):
    result = fleet.call("sqlmigrate_drift")

    assert result.code == 0, result.text
    assert "No drift: database " in result.out  # the shared set, its tenants' schemas left out
    assert "the tenant set's 2 applied migrations (3 tenants) in schema sqlmigrate_rebuild_1" in result.out
    assert result.out.endswith("3 tenants: 3 as their migrations left them.\n")


def test_one_state_is_rebuilt_once_for_every_tenant_in_it(fleet):
    code, objects = as_json(fleet, tenants=True)

    assert code == 0
    assert [obj["tenant"] for obj in objects] == list(TENANTS)  # --tenants: no shared set
    assert {obj["rebuild"] for obj in objects} == {"sqlmigrate_rebuild_1"}
    assert all(obj["drifted"] is False and obj["applied"] == 2 for obj in objects)


def test_an_index_added_by_hand_in_one_tenant_is_that_tenants_drift(fleet):
    by_hand(fleet, "CREATE INDEX orders_total_idx ON tenant_b.orders (total)")

    result = fleet.call("sqlmigrate_drift", tenants=True)

    assert result.code == EXIT_DRIFT, result.text
    assert "  tenant_b:\n    changed: table tenant_b.orders\n" in result.out
    assert (
        "+     index orders_total_idx: CREATE INDEX orders_total_idx ON tenant_b.orders USING btree (total)"
        in result.out
    )
    assert "3 tenants: 2 as their migrations left them, 1 drifted (tenant_b)." in result.out
    assert "1 tenant of 3 drifted: tenant_b" in result.err


def test_a_column_dropped_by_hand_in_one_tenant_is_that_tenants_drift(fleet):
    by_hand(fleet, "ALTER TABLE tenant_c.orders DROP COLUMN note")

    code, objects = as_json(fleet)

    assert code == EXIT_DRIFT
    tenants = tenants_of(objects)
    assert tenants["tenant_a"]["drifted"] is False and tenants["tenant_b"]["drifted"] is False
    [change] = tenants["tenant_c"]["changes"]
    assert (change["change"], change["object"]) == ("changed", "table tenant_c.orders")
    assert [line for line in change["diff"] if line[0] in "+-"] == ["-     column note text"]
    [shared] = [obj for obj in objects if obj["tenant"] is None]
    assert shared["drifted"] is False  # the tenants' schemas are not the shared set's drift


def test_tenants_at_two_versions_are_rebuilt_once_per_applied_state(fleet):
    fleet.migration("20240103000000_tags", "CREATE TABLE tags (id int);", "DROP TABLE tags;")
    assert fleet.call("sqlmigrate_up", tenant=["tenant_a", "tenant_c"]).code == 0

    code, objects = as_json(fleet, tenants=True)

    assert code == 0, objects
    rebuilds = {obj["tenant"]: obj["rebuild"] for obj in objects}
    assert len(set(rebuilds.values())) == 2  # two applied states, two rebuilds, for three tenants
    assert rebuilds["tenant_a"] == rebuilds["tenant_c"] != rebuilds["tenant_b"]
    assert {obj["tenant"]: obj["applied"] for obj in objects} == {"tenant_a": 3, "tenant_b": 2, "tenant_c": 3}


def test_a_tenant_whose_applied_file_changed_is_reported_not_compared(fleet):
    by_hand(fleet, f"UPDATE tenant_b.schema_migrations SET checksum = 'x' WHERE id = '{NOTES}'")

    result = fleet.call("sqlmigrate_drift", tenants=True)

    assert result.code == EXIT_CODES[ProblemKind.MODIFIED], result.text
    assert "  tenant_b: not compared: " in result.out and NOTES in result.out
    assert "3 tenants: 2 as their migrations left them, 1 not compared (tenant_b)." in result.out


def test_the_ignore_list_applies_to_each_tenants_own_names(fleet, settings):
    by_hand(
        fleet,
        "CREATE INDEX orders_total_idx ON tenant_a.orders (total)",
        "CREATE TABLE tenant_b.tmp_export (id int)",
    )
    settings.SQLMIGRATE_DRIFT_IGNORE = ["table tenant_*.tmp_*", "table tenant_a.orders"]

    code, objects = as_json(fleet, tenants=True)

    assert code == 0, objects
    tenants = tenants_of(objects)
    assert tenants["tenant_a"]["ignored"] == ["table tenant_a.orders"]
    assert tenants["tenant_b"]["ignored"] == ["table tenant_b.tmp_export"]


def test_one_named_tenant(fleet):
    by_hand(fleet, "CREATE TABLE tenant_a.extra (id int)")

    clean = fleet.call("sqlmigrate_drift", tenant=["tenant_b"])
    drifted = fleet.call("sqlmigrate_drift", tenant=["tenant_a"])

    assert clean.code == 0, clean.text
    assert clean.out.endswith("1 tenant: 1 as their migrations left them.\n")
    assert drifted.code == EXIT_DRIFT
    assert "only in the live database (added by hand): table tenant_a.extra" in drifted.out


def test_a_table_added_by_hand_to_the_shared_schema_is_the_shared_sets_drift(fleet):
    by_hand(fleet, "CREATE TABLE public.by_hand (id int)")

    result = fleet.call("sqlmigrate_drift", shared=True)

    assert result.code == EXIT_DRIFT, result.text
    assert "only in the live database (added by hand): table public.by_hand" in result.out
    assert "tenant_a" not in result.out  # the tenants' schemas are theirs, not the shared set's


def test_reading_the_tenants_does_not_take_a_query_per_tenant(fleet):
    targets = [Target(fleet.target.alias, schema) for schema in TENANTS]
    with CaptureQueriesContext(connections[fleet.target.alias]) as one:
        drift_fleet(targets[:1], fleet.target.directory)
    with CaptureQueriesContext(connections[fleet.target.alias]) as three:
        drift_fleet(targets, fleet.target.directory)

    assert len(three.captured_queries) == len(one.captured_queries) > 0, [q["sql"][:60] for q in three.captured_queries]


# up --check-drift on a fleet --------------------------------------------------------------------


def pending_everywhere(fleet: TenantFleet) -> None:
    fleet.target.migration("20240105000000_regions", "CREATE TABLE regions (id int);", "DROP TABLE regions;")
    fleet.migration("20240105000000_tags", "CREATE TABLE tags (id int);", "DROP TABLE tags;")


def test_up_check_drift_on_a_drifted_fleet_applies_nothing_anywhere(fleet):
    pending_everywhere(fleet)
    by_hand(fleet, "ALTER TABLE tenant_c.orders DROP COLUMN note")

    result = fleet.call("sqlmigrate_up", check_drift=True)

    assert result.code == EXIT_DRIFT, result.text
    [line] = result.err.strip().splitlines()
    assert line == (
        "not applying anything: tenant 'tenant_c' has drifted (changed: table tenant_c.orders); see them all with "
        f"'manage.py sqlmigrate_drift --database {fleet.target.alias} --tenants'"
    )
    assert "regions" not in fleet.target.tables()
    assert all("20240105000000_tags" not in fleet.history(schema) for schema in TENANTS)


def test_up_check_drift_on_a_clean_fleet_applies(fleet):
    pending_everywhere(fleet)

    result = fleet.call("sqlmigrate_up", check_drift=True)

    assert result.code == 0, result.text
    assert "No drift: 3 tenants: 3 as their migrations left them." in result.out
    assert result.out.endswith("1 database: 1 applied.\n3 tenants: 3 applied.\n")
    assert all(fleet.history(schema)[-1] == "20240105000000_tags" for schema in TENANTS)


def test_up_check_drift_of_the_shared_set_alone_leaves_the_tenants_schemas_out(fleet):
    pending_everywhere(fleet)

    result = fleet.call("sqlmigrate_up", check_drift=True, shared=True)

    assert result.code == 0, result.text
    assert "No drift: database " in result.out
    assert "regions" in fleet.target.tables()


def test_a_tenant_whose_name_must_be_quoted_is_compared_as_the_others(fleet):
    fleet.create("tenant-x")
    assert fleet.call("sqlmigrate_up", tenant=["tenant-x"]).code == 0

    clean = fleet.call("sqlmigrate_drift", tenant=["tenant-x"])
    by_hand(fleet, 'CREATE INDEX orders_total_idx ON "tenant-x".orders (total)')
    drifted = fleet.call("sqlmigrate_drift", tenant=["tenant-x"])

    assert clean.code == 0, clean.text
    assert drifted.code == EXIT_DRIFT
    assert '    changed: table "tenant-x".orders\n' in drifted.out


def test_a_tenant_whose_schema_is_missing_is_not_compared(fleet):
    result = fleet.call("sqlmigrate_drift", tenant=["tenant_a", "tenant_gone"])

    assert result.code == EXIT_SOME_FAILED, result.text
    assert "  tenant_gone: not compared: database " in result.out
    assert "schema 'tenant_gone' does not exist" in result.out
    assert result.err.endswith("1 tenant not compared: tenant_gone")

"""The admin's fleet page (where each tenant of a database stands) and a tenant's own migrations,
through Django's test client on PostgreSQL; on SQLite, one line saying tenants are PostgreSQL's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from django.test import Client
from django.urls import reverse

from sqlmigrate_app.runner import MigrationRunner

from .support.admin_demo import detail_url, list_url, listed_rows
from .support.fleet import TenantFleet, make_fleet
from .support.odd_history import ODD_IDS, add_odd_rows
from .support.wire import queries_on_the_wire

pytestmark = pytest.mark.django_db
postgresql = pytest.mark.parametrize("target", ["postgresql"], indirect=True)
TENANT_ROW_RE = re.compile(r'<tr class="sqlmigrate-tenant" data-state="([\w ]+)">.*?tenant=([\w-]+)"', re.DOTALL)
ONE, TWO, THREE = "20240101000000_one", "20240102000000_two", "20240103000000_three"


@pytest.fixture
def fleet(target: Any, settings: Any, tmp_path: Path) -> TenantFleet:
    """A tenant set of three migrations."""
    fleet = make_fleet(target, settings, tmp_path)
    fleet.migration(ONE, "CREATE TABLE one (id int);", "DROP TABLE one;")
    fleet.migration(TWO, "CREATE TABLE two (id int);", "DROP TABLE two;")
    fleet.migration(THREE, "CREATE TABLE three (id int);", "DROP TABLE three;")
    settings.SQLMIGRATE_DIRS = {target.alias: str(target.directory)}
    return fleet


def migrate(fleet: TenantFleet, schema: str, to: str | None = None) -> None:
    MigrationRunner(fleet.target.alias, schema=schema).migrate(to=to)


def fleet_url(**params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in {"database": "target", **params}.items())
    return reverse("admin:sqlmigrate_app_sqlmigration_fleet") + "?" + query


def tenant_rows(client: Client, **params: str) -> list[tuple[str, str]]:
    """(state, tenant) of every row of the fleet page, top to bottom."""
    response = client.get(fleet_url(**params))
    assert response.status_code == 200
    return TENANT_ROW_RE.findall(response.content.decode())


@pytest.fixture
def mixed(fleet: TenantFleet) -> TenantFleet:
    """Tenants up to date, behind (by one and by three), modified, missing, one with another tool's table."""
    fleet.create("tenant_done", "tenant_also_done", "tenant_behind", "tenant_new", "tenant_modified", "tenant_extra")
    fleet.create("tenant_foreign")
    fleet.target.query("CREATE TABLE tenant_foreign.schema_migrations (version bigint)")
    for schema in ("tenant_done", "tenant_also_done", "tenant_modified", "tenant_extra"):
        migrate(fleet, schema)
    migrate(fleet, "tenant_behind", to=TWO)
    fleet.target.query(f"UPDATE tenant_modified.schema_migrations SET checksum = 'x' WHERE id = '{TWO}'")
    fleet.target.query(
        "INSERT INTO tenant_extra.schema_migrations (id, name, checksum) VALUES ('20230101000000_old', 'Old', 'abc')"
    )
    return fleet


# Where the fleet stands ---------------------------------------------------------------------------


@postgresql
def test_the_fleet_page_shows_each_tenant_what_is_wrong_first_and_counts_every_state(
    mixed: TenantFleet, admin_client: Client, settings: Any
) -> None:
    tenants = ["tenant_also_done", "tenant_behind", "tenant_done", "tenant_extra", "tenant_foreign", "tenant_gone"]
    settings.SQLMIGRATE_TENANTS = lambda alias: [*tenants, "tenant_modified", "tenant_new"]

    response = admin_client.get(fleet_url())

    html = response.content.decode()
    assert TENANT_ROW_RE.findall(html) == [
        ("error", "tenant_gone"),
        ("history_table", "tenant_foreign"),
        ("missing", "tenant_extra"),
        ("modified", "tenant_modified"),
        ("behind", "tenant_behind"),
        ("behind", "tenant_new"),
        ("up to date", "tenant_also_done"),
        ("up to date", "tenant_done"),
    ]
    for label in ("All (8)", "Up to date (2)", "Behind (2)", "Modified (1)", "Missing (1)", "History table (1)"):
        assert label in html, label
    assert f"1: <code>{THREE}</code>" in html  # tenant_behind, by which migration
    assert f"3: <code>{ONE}</code>, <code>{TWO}</code>, <code>{THREE}</code>" in html  # tenant_new
    assert "modified <code>20240102000000_two</code>" in html
    assert "missing <code>20230101000000_old</code>" in html
    assert "schema &#x27;tenant_gone&#x27; does not exist" in html


@postgresql
def test_filter_by_state_and_by_tenant(mixed: TenantFleet, admin_client: Client) -> None:
    behind = tenant_rows(admin_client, state="behind")
    done = tenant_rows(admin_client, state="up to date")
    named = tenant_rows(admin_client, q="DONE")
    both = tenant_rows(admin_client, q="tenant_", state="modified")

    assert behind == [("behind", "tenant_behind"), ("behind", "tenant_new")]
    assert done == [("up to date", "tenant_also_done"), ("up to date", "tenant_done")]
    assert named == done
    assert both == [("modified", "tenant_modified")]


@postgresql
def test_an_unknown_state_goes_back_to_the_unfiltered_fleet(mixed: TenantFleet, admin_client: Client) -> None:
    response = admin_client.get(fleet_url(state="bogus"))
    again = admin_client.get(fleet_url(state="bogus", e="1"))

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:sqlmigrate_app_sqlmigration_fleet") + "?database=target&e=1"
    assert again.status_code == 400 and b"unknown state 'bogus'" in again.content


@postgresql
def test_a_hundred_and_five_tenants_are_two_pages(fleet: TenantFleet, admin_client: Client) -> None:
    fleet.create(*[f"tenant_{n:03d}" for n in range(105)])

    first, second = tenant_rows(admin_client), tenant_rows(admin_client, p="2")

    assert [tenant for _, tenant in first + second] == [f"tenant_{n:03d}" for n in range(105)]
    assert len(first) == 100
    assert admin_client.get(fleet_url(p="3")).status_code == 302


@postgresql
def test_reading_the_fleet_costs_the_same_queries_at_3_tenants_or_30(
    fleet: TenantFleet, admin_client: Client, tmp_path: Path
) -> None:
    fleet.create(*[f"tenant_{n:02d}" for n in range(30)])
    for n in range(0, 30, 2):
        migrate(fleet, f"tenant_{n:02d}")
    admin_client.get(fleet_url())  # the files cached, the connection open

    at_30 = queries_on_the_wire("target", tmp_path / "trace_30", lambda: admin_client.get(fleet_url()))
    fleet.target.query(f"DROP SCHEMA {', '.join(f'tenant_{n:02d}' for n in range(3, 30))} CASCADE")
    at_3 = queries_on_the_wire("target", tmp_path / "trace_3", lambda: admin_client.get(fleet_url()))

    # The tenant list, the shared set's schema (no tenant may hold its history), the catalog, the histories.
    assert len(at_3) == len(at_30) == 4
    assert "current_schema()" in at_30[1] and "pg_namespace" in at_30[2] and "UNION ALL" in at_30[3]


@postgresql
def test_viewing_the_fleet_writes_nothing(fleet: TenantFleet, admin_client: Client, settings: Any) -> None:
    fleet.create("tenant_new")
    settings.SQLMIGRATE_TENANTS = lambda alias: ["tenant_new", "tenant_gone"]

    pages = [
        fleet_url(),
        list_url(tenant="tenant_new"),
        list_url(tenant="tenant_gone"),
        detail_url(ONE) + "&tenant=tenant_new",
    ]
    answers = [admin_client.get(url).status_code for url in pages]

    assert answers == [200, 200, 200, 200]
    assert not fleet.has_history("tenant_new")
    assert fleet.target.query("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_gone'") == [(0,)]
    assert admin_client.post(fleet_url()).status_code == 405


# A tenant's own migrations ------------------------------------------------------------------------


@postgresql
def test_a_tenants_migrations_are_one_click_from_the_fleet(mixed: TenantFleet, admin_client: Client) -> None:
    html = admin_client.get(fleet_url(state="behind")).content.decode()
    link = re.search(r'href="([^"]*tenant=tenant_behind)"', html)
    assert link

    page = admin_client.get(link[1].replace("&amp;", "&"))
    detail = admin_client.get(detail_url(ONE) + "&tenant=tenant_behind")

    assert page.status_code == 200
    assert listed_rows(page.content.decode()) == [("pending", THREE), ("applied", TWO), ("applied", ONE)]
    assert "tenant <code>tenant_behind</code>" in page.content.decode()
    assert "/change/?database=target&amp;tenant=tenant_behind" in page.content.decode()
    stored = mixed.target.query(f"SELECT checksum FROM tenant_behind.schema_migrations WHERE id = '{ONE}'")[0][0]
    assert f'<code id="sqlmigrate-stored-checksum">{stored}</code>' in detail.content.decode()
    assert "CREATE TABLE one (id int);" in detail.content.decode()


@postgresql
def test_a_tenants_list_keeps_the_tenant_in_its_filters_and_search(mixed: TenantFleet, admin_client: Client) -> None:
    html = admin_client.get(list_url(tenant="tenant_modified")).content.decode()

    assert 'href="?database=target&amp;tenant=tenant_modified&amp;state=pending"' in html
    assert '<input type="hidden" name="tenant" value="tenant_modified">' in html
    assert listed_rows(admin_client.get(list_url(tenant="tenant_modified", state="modified")).content.decode()) == [
        ("modified", TWO)
    ]
    assert admin_client.get(list_url(tenant="tenant_modified", state="bogus"))["Location"].endswith(
        "?database=target&tenant=tenant_modified&e=1"
    )


@postgresql
def test_a_tenant_name_sqlmigrate_does_not_take_is_one_line_on_the_page(
    fleet: TenantFleet, admin_client: Client
) -> None:
    response = admin_client.get(list_url(tenant="pg_catalog"))
    detail = admin_client.get(detail_url(ONE) + "&tenant=no%20such")

    assert response.status_code == 200
    assert "is not a tenant schema name" in response.content.decode()
    assert detail.status_code == 404


@postgresql
def test_odd_history_rows_of_a_tenant_show_as_missing_not_a_server_error(
    fleet: TenantFleet, admin_client: Client
) -> None:
    fleet.create("tenant_odd")
    fleet.target.query(
        "CREATE TABLE tenant_odd.schema_migrations (id TEXT PRIMARY KEY, name TEXT NOT NULL,"
        " executed_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, checksum TEXT NOT NULL)"
    )
    add_odd_rows(_InSchema(fleet.target, "tenant_odd"))

    response = admin_client.get(fleet_url())
    tenant_page = admin_client.get(list_url(tenant="tenant_odd"))

    html = response.content.decode()
    assert response.status_code == tenant_page.status_code == 200
    assert TENANT_ROW_RE.findall(html) == [("missing", "tenant_odd")]
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "missing <code>(empty id)</code>" in html
    assert "Missing (7)" in tenant_page.content.decode() and len(ODD_IDS) == 7


class _InSchema:
    """``target.query`` with a schema first on the search path, for add_odd_rows."""

    def __init__(self, target: Any, schema: str) -> None:
        self.target, self.schema = target, schema

    def query(self, sql: str, params: list[Any]) -> None:
        self.target.query(f"SET search_path = {self.schema}")
        try:
            self.target.query(sql, params)
        finally:
            self.target.query("SET search_path = public")


# Who sees it, and databases without tenants -------------------------------------------------------


@postgresql
def test_the_fleet_page_takes_the_list_pages_permission(
    mixed: TenantFleet, client: Client, django_user_model: Any
) -> None:
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_sqlmigration"))

    anonymous = client.get(fleet_url())
    client.force_login(staff)
    refused = client.get(fleet_url())
    client.force_login(viewer)
    allowed = client.get(fleet_url())

    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("admin:login"))
    assert refused.status_code == 403
    assert allowed.status_code == 200


@postgresql
def test_the_list_page_links_to_the_fleet_only_where_there_are_tenants(
    fleet: TenantFleet, admin_client: Client, settings: Any
) -> None:
    with_tenants = admin_client.get(list_url()).content.decode()
    settings.SQLMIGRATE_TENANT_DIR = {}
    without = admin_client.get(list_url()).content.decode()
    fleet_page = admin_client.get(fleet_url()).content.decode()

    assert (
        'id="sqlmigrate-fleet-link"><a href="/admin/sqlmigrate_app/sqlmigration/fleet/?database=target"' in with_tenants
    )
    assert "sqlmigrate-fleet-link" not in without
    assert "database &#x27;target&#x27; has no tenant set: set SQLMIGRATE_TENANT_DIR" in fleet_page


@pytest.mark.parametrize("target", ["sqlite"], indirect=True)
def test_tenants_on_sqlite_are_one_line_on_the_fleet_page(target: Any, settings: Any, admin_client: Client) -> None:
    settings.SQLMIGRATE_TENANT_DIR = {target.alias: str(target.directory)}
    settings.SQLMIGRATE_TENANTS = lambda alias: ["tenant_a"]

    response = admin_client.get(fleet_url())

    assert response.status_code == 200
    assert "are a PostgreSQL feature" in response.content.decode()
    assert connections["target"].vendor == "sqlite"


@postgresql
def test_a_tenant_set_setting_manage_py_check_refuses_is_one_line_and_no_link(
    fleet: TenantFleet, admin_client: Client, settings: Any
) -> None:
    settings.SQLMIGRATE_TENANT_DIR = 42

    fleet_page = admin_client.get(fleet_url())
    list_page = admin_client.get(list_url())

    assert fleet_page.status_code == list_page.status_code == 200
    assert "SQLMIGRATE_TENANT_DIR 42 is not a directory" in fleet_page.content.decode()
    assert "sqlmigrate-fleet-link" not in list_page.content.decode()

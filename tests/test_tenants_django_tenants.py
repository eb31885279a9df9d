"""sqlmigrate with the real django-tenants (``tests/djtenants``): tenants created through its model,
``migrate_schemas`` for Django's models, then ``sqlmigrate_up`` for the SQL, in real ``manage.py``
processes on PostgreSQL; ``sqlmigrate_app.tenants.django_tenants_schemas`` lists the model's
schemas; the ``post_schema_sync`` receiver of docs/tenants.md brings a new tenant up to date;
django-tenants' search path and ours stay out of each other's way."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from .support.djtenants import DjTenantsProject

_numbers = itertools.count()

SHARED = "CREATE TABLE plans (id int PRIMARY KEY, name text NOT NULL);"
# A tenant's table refers to its own auth_user (a TENANT_APPS model: migrate_schemas made it) and
# to the shared set's plans (public, after the tenant's schema on the search path).
INVOICES = "CREATE TABLE invoices (id int PRIMARY KEY, plan int REFERENCES plans, owner int REFERENCES auth_user);"


def _create_database(server: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    return server.rsplit("/", 1)[0] + "/" + name


def _drop_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def template(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database where ``migrate_schemas --shared`` has run: each test's starts as a copy."""
    name = f"sqlmigrate_djtenants_{os.getpid()}"
    url = _create_database(postgres_server, name)
    empty = tmp_path_factory.mktemp("djtenants-template")
    run = DjTenantsProject(url, empty, empty).manage("migrate_schemas", "--shared", "-v", "0")
    assert run.returncode == 0, run.stdout + run.stderr
    yield name
    _drop_database(postgres_server, name)


@pytest.fixture
def project(postgres_server: str, template: str, tmp_path: Path) -> Iterator[DjTenantsProject]:
    name = f"{template}_{next(_numbers)}"
    url = _create_database(postgres_server, name, template)
    (tmp_path / "shared").mkdir()
    (tmp_path / "tenant").mkdir()
    yield DjTenantsProject(url, tmp_path / "shared", tmp_path / "tenant")
    _drop_database(postgres_server, name)


def ok(run):
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def test_the_ready_callable_lists_the_tenant_models_schemas_but_public(project):
    ok(project.create_tenants("public", "acme", "globex"))
    project.query("CREATE SCHEMA reports")

    listed = project.python(
        "import json; from sqlmigrate_app.tenants import django_tenants_schemas;"
        " print(json.dumps(django_tenants_schemas('default')))"
    )

    assert sorted(listed) == ["acme", "globex"]
    assert {"public", "acme", "globex", "reports"} <= project.schemas()


def test_a_deploy_migrates_django_then_the_shared_set_in_public_and_the_tenant_set_in_each_tenant(project):
    ok(project.create_tenants("public", "acme", "globex"))
    project.migration(project.shared, "20240101000000_plans", SHARED, "DROP TABLE plans;")
    project.migration(project.tenant, "20240101000000_invoices", INVOICES, "DROP TABLE invoices;")

    ok(project.manage("migrate_schemas", "-v", "0"))
    run = ok(project.manage("sqlmigrate_up"))

    assert run.stdout.splitlines() == ["1 database: 1 applied.", "2 tenants: 2 applied."]
    assert "plans" in project.tables("public") and "invoices" not in project.tables("public")
    assert project.history("public") == ["20240101000000_plans"]
    for schema in ("acme", "globex"):
        assert {"invoices", "auth_user", "schema_migrations"} <= project.tables(schema)
        assert "plans" not in project.tables(schema)
        assert project.history(schema) == ["20240101000000_invoices"]
        references = project.query(
            "SELECT confrelid::regclass::text FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
            [f"{schema}.invoices"],
        )
        assert sorted(row[0] for row in references) == [f"{schema}.auth_user", "plans"]
    assert ok(project.manage("sqlmigrate_up")).stdout.splitlines() == [
        "1 database: 1 up to date.",
        "2 tenants: 2 up to date.",
    ]


def test_status_of_the_tenants_and_one_tenant_by_name(project):
    ok(project.create_tenants("public", "acme", "globex"))
    project.migration(project.tenant, "20240101000000_invoices", INVOICES.replace(" plan int REFERENCES plans,", ""))
    ok(project.manage("sqlmigrate_up"))
    project.migration(project.tenant, "20240102000000_notes", "CREATE TABLE notes (id int PRIMARY KEY);")

    one = ok(project.manage("sqlmigrate_up", "--tenant", "acme"))
    summary = ok(project.manage("sqlmigrate_status", "--tenants"))
    every = json.loads(ok(project.manage("sqlmigrate_status", "--tenants", "--json")).stdout)

    assert one.stdout.splitlines() == ["1 tenant: 1 applied."]
    assert project.history("acme") == ["20240101000000_invoices", "20240102000000_notes"]
    assert project.history("globex") == ["20240101000000_invoices"]
    assert summary.stdout.splitlines()[0] == "2 tenants: 1 up to date, 1 behind."
    assert "globex (1 pending)" in summary.stdout
    assert [(row["tenant"], row["state"], row["pending"]) for row in every] == [
        ("acme", "up to date", []),
        ("globex", "behind", ["20240102000000_notes"]),
    ]


def test_a_failing_tenant_exits_13_and_the_others_are_applied(project):
    ok(project.create_tenants("public", "acme", "globex", "initech"))
    project.query("CREATE TABLE globex.notes (id int)")  # by hand: the tenant set's CREATE TABLE fails there
    project.migration(project.tenant, "20240101000000_notes", "\nCREATE TABLE notes (id int PRIMARY KEY);")

    run = project.manage("sqlmigrate_up", "--keep-going")

    assert run.returncode == 13, run.stdout + run.stderr
    assert "globex: " in run.stderr and "20240101000000_notes.sql:3: " in run.stderr
    assert "3 tenants: 2 applied, 1 failed." in run.stdout + run.stderr
    assert project.history("acme") == project.history("initech") == ["20240101000000_notes"]
    assert project.history("globex") == []


def test_a_tenant_created_through_the_model_gets_the_tenant_set_with_no_further_command(project):
    project.migration(project.shared, "20240101000000_plans", SHARED, "DROP TABLE plans;")
    project.migration(project.tenant, "20240101000000_invoices", INVOICES, "DROP TABLE invoices;")
    ok(project.manage("sqlmigrate_up", "--shared"))

    ok(project.create_tenants("public", "acme"))

    assert "invoices" in project.tables("acme")
    assert project.history("acme") == ["20240101000000_invoices"]
    assert "invoices" not in project.tables("public")  # the receiver leaves the public tenant alone
    assert project.history("public") == ["20240101000000_plans"]
    assert ok(project.manage("sqlmigrate_status", "--tenants")).stdout.splitlines() == ["1 tenant: 1 up to date."]


def test_a_new_tenant_whose_tenant_set_fails_is_not_created(project):
    ok(project.create_tenants("public"))
    project.migration(project.tenant, "20240101000000_invoices", INVOICES)  # plans is missing: it fails

    run = project.create_tenants("acme")

    assert run.returncode != 0
    assert "20240101000000_invoices.sql:2: " in run.stderr and 'relation "plans" does not exist' in run.stderr
    assert project.query("SELECT schema_name FROM customers_client") == [("public",)]
    assert "acme" not in project.schemas()  # django-tenants drops the schema of a tenant it could not sync
    assert "customers_client" in project.tables("public")


# django-tenants sets search_path as each cursor opens, from the tenant the connection is set to.
SEARCH_PATHS = """
import json
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from sqlmigrate_app.fleet import migrate_tenant
from tests.djtenants.customers.models import Client

raw = connection.connection.cursor() if connection.connection else None
with Client.objects.get(schema_name="acme"):
    User.objects.create(username="before")
call_command("sqlmigrate_up", "--shared", verbosity=0)  # the last tenant's search_path is not the run's
with Client.objects.get(schema_name="acme"):
    User.objects.create(username="during")
    migrate_tenant("globex")
    path = connection.connection.cursor().execute("SHOW search_path").fetchone()[0]
    User.objects.create(username="after")
    print(json.dumps({"path": path, "schema": connection.schema_name}))
"""


def test_django_tenants_search_path_and_ours_stay_out_of_each_others_way(project):
    ok(project.create_tenants("public", "acme", "globex"))
    project.migration(project.shared, "20240101000000_plans", SHARED, "DROP TABLE plans;")
    project.migration(project.tenant, "20240101000000_invoices", INVOICES, "DROP TABLE invoices;")

    found = project.python(SEARCH_PATHS)

    assert "plans" in project.tables("public") and project.history("public") == ["20240101000000_plans"]
    assert "plans" not in project.tables("acme")
    assert found == {"path": "acme, public", "schema": "acme"}
    assert "invoices" in project.tables("globex") and project.history("globex") == ["20240101000000_invoices"]
    assert "invoices" not in project.tables("acme")
    users = project.query("SELECT username FROM acme.auth_user ORDER BY id")
    assert users == [("before",), ("during",), ("after",)]
    assert project.query("SELECT count(*) FROM globex.auth_user") == [(0,)]


MIGRATE_PUBLIC = """
import json
from sqlmigrate_app.errors import ConfigurationError
from sqlmigrate_app.fleet import migrate_tenant

try:
    migrate_tenant("public")
except ConfigurationError as exc:
    print(json.dumps(str(exc)))
"""


def test_the_public_tenants_schema_never_gets_the_tenant_set(project):
    ok(project.create_tenants("public"))
    project.migration(project.tenant, "20240101000000_invoices", "CREATE TABLE invoices (id int PRIMARY KEY);")

    refused = project.python(MIGRATE_PUBLIC)

    assert refused == (
        "database 'default': schema 'public' holds the shared set's history, so it cannot be a tenant's: "
        "leave it out of SQLMIGRATE_TENANTS, --tenant and migrate_tenant()"
    )
    assert "invoices" not in project.tables("public") and "schema_migrations" not in project.tables("public")


def test_a_tenant_sets_requires_is_checked_against_the_tenants_own_django_migrations(project):
    ok(project.create_tenants("public", "acme", "globex"))
    # A TENANT_APPS migration run on public (where the router only records it) but not yet on acme.
    project.query(
        "DELETE FROM acme.django_migrations WHERE app = 'auth' AND name = '0012_alter_user_first_name_max_length'"
    )
    (project.tenant / "20240101000000_names.sql").write_text(
        "-- sqlmigrate: requires=auth.0012_alter_user_first_name_max_length\n"
        "-- UP\nCREATE VIEW names AS SELECT first_name FROM auth_user;\n-- DOWN\nDROP VIEW names;\n"
    )

    run = project.manage("sqlmigrate_up", "--tenants", "--keep-going")

    assert run.returncode == 13, run.stdout + run.stderr
    assert (
        "acme: " in run.stderr
        and "requires the Django migration auth.0012_alter_user_first_name_max_length, which is not applied in schema"
        " 'acme': run Django's migrations there first (django-tenants: migrate_schemas)"
        in run.stderr
    )
    assert project.history("acme") == [] and project.history("globex") == ["20240101000000_names"]

"""``manage.py check`` on the tenant settings: ``SQLMIGRATE_TENANT_DIR`` and ``SQLMIGRATE_TENANTS``
(E010), a tenant set on a database without schemas (E011), the tenant set's directory and files
checked as the shared set's are; without a database."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks

from .support.target import ROOT

GOOD = "-- UP\nCREATE TABLE t (id INTEGER);\n-- DOWN\nDROP TABLE t;\n"


def messages(but: str = ""):
    return [(message.id, message.msg) for message in run_checks(tags=["sqlmigrate"]) if message.id != but]


def not_a_function(alias):
    return []


NOT_CALLABLE = 42


@pytest.fixture
def shared_dir(settings, tmp_path):
    (tmp_path / "shared").mkdir()
    settings.SQLMIGRATE_DIR = tmp_path / "shared"
    return tmp_path


@pytest.mark.parametrize(
    ("tenants", "message"),
    [
        (None, "SQLMIGRATE_TENANTS is not set: give the dotted path of a function of the database alias"),
        ("tests.nowhere.tenants", "SQLMIGRATE_TENANTS 'tests.nowhere.tenants' cannot be imported: "),
        (
            "tests.test_checks_tenants.NOT_CALLABLE",
            "SQLMIGRATE_TENANTS 'tests.test_checks_tenants.NOT_CALLABLE' is not a function.",
        ),
    ],
)
def test_a_tenant_set_needs_a_tenants_function_e010(shared_dir, settings, tenants, message):
    settings.SQLMIGRATE_TENANT_DIR = {"default": shared_dir / "shared"}
    if tenants is not None:
        settings.SQLMIGRATE_TENANTS = tenants

    found = messages(but="sqlmigrate.E011")  # the tests' default database is SQLite

    assert [found_id for found_id, _ in found] == ["sqlmigrate.E010"]
    assert found[0][1].startswith(message)


def test_a_tenant_dir_of_an_unknown_alias_or_not_a_path_is_e010(shared_dir, settings):
    settings.SQLMIGRATE_TENANTS = "tests.test_checks_tenants.not_a_function"

    settings.SQLMIGRATE_TENANT_DIR = {"replica": shared_dir / "shared"}
    unknown = messages()
    settings.SQLMIGRATE_TENANT_DIR = 42
    not_a_path = messages()

    assert unknown == [
        ("sqlmigrate.E010", "SQLMIGRATE_TENANT_DIR names the database alias 'replica', which is not in DATABASES.")
    ]
    assert not_a_path == [
        ("sqlmigrate.E010", "SQLMIGRATE_TENANT_DIR must be a directory, or a dict of database alias -> directory.")
    ]


def test_a_tenant_set_on_sqlite_is_e011(shared_dir, settings):
    settings.SQLMIGRATE_TENANTS = "tests.test_checks_tenants.not_a_function"
    settings.SQLMIGRATE_TENANT_DIR = {"default": shared_dir / "shared"}

    assert messages() == [
        (
            "sqlmigrate.E011",
            "database 'default' is SQLite: tenant schemas (SQLMIGRATE_TENANT_DIR, --tenants, --tenant) are a "
            "PostgreSQL feature.",
        )
    ]


def test_the_tenant_sets_directory_and_files_are_checked(shared_dir, settings, tmp_path):
    settings.SQLMIGRATE_TENANTS = "tests.test_checks_tenants.not_a_function"
    settings.SQLMIGRATE_TENANT_DIR = {"default": tmp_path / "nope"}
    missing = messages(but="sqlmigrate.E011")  # the tests' default database is SQLite
    (tmp_path / "tenant").mkdir()
    (tmp_path / "tenant" / "20240101000000_bad.sql").write_text("CREATE TABLE t (id int);\n")
    settings.SQLMIGRATE_TENANT_DIR = {"default": tmp_path / "tenant"}
    bad = messages(but="sqlmigrate.E011")
    (tmp_path / "tenant" / "20240101000000_bad.sql").write_text(GOOD)
    good = messages(but="sqlmigrate.E011")

    assert missing == [("sqlmigrate.E001", f"SQLMIGRATE_TENANT_DIR['default'] {tmp_path / 'nope'} does not exist.")]
    assert [found_id for found_id, _ in bad] == ["sqlmigrate.E003"]
    assert good == []


@pytest.mark.parametrize(("url", "code"), [("postgresql://nobody@127.0.0.1:1/none", 0), ("sqlite:///:memory:", 1)])
def test_manage_py_check_of_a_project_with_tenants(tmp_path, url, code):
    (tmp_path / "20240101000000_accounts.sql").write_text(GOOD)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "tests.settings_fleet",
        "SQLMIGRATE_TEST_TENANT_DIR": str(tmp_path),
    }

    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == code, done.stdout + done.stderr
    assert ("sqlmigrate.E011" in done.stderr) == bool(code)

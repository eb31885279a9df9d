"""Several databases in one command: ``--database`` repeated and ``--all-databases`` run each
database's shared set on the fleet's parallel runner (and each one's tenants), with a result
and an exit code per database, on real PostgreSQL databases."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from .support.fleet import TenantFleet, make_fleet
from .support.target import register_alias, unregister_alias

pytestmark = pytest.mark.parametrize("target", ["postgresql"], indirect=True)
_numbers = itertools.count()


@pytest.fixture
def second(target, postgres_server, django_db_blocker) -> Iterator[str]:
    """Another PostgreSQL database, the alias ``second``."""
    name = f"sqlmigrate_second_{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    with django_db_blocker.unblock():
        register_alias("second", postgres_server.rsplit("/", 1)[0] + "/" + name)
        try:
            yield "second"
        finally:
            unregister_alias("second")
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def query(alias: str, sql: str) -> list[tuple[Any, ...]]:
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []


@pytest.fixture
def two(target, second, settings, tmp_path):
    """``target`` and ``second``, each with a directory of its own (SQLMIGRATE_DIRS)."""
    directories = {alias: tmp_path / "sql" / alias for alias in (target.alias, second)}
    for alias, directory in directories.items():
        directory.mkdir(parents=True)
        (directory / "20240101000000_events.sql").write_text(f"-- UP\nCREATE TABLE {alias}_events (id int);\n-- DOWN\n")
    settings.SQLMIGRATE_DIRS = directories
    return directories


def test_database_repeated_migrates_each_database_with_its_own_result(target, second, two):
    result = target.call("sqlmigrate_up", database=[target.alias, second], directory=None)

    assert (result.code, result.out) == (0, "2 databases: 2 applied.\n")
    assert query(second, "SELECT id FROM schema_migrations") == [("20240101000000_events",)]
    assert "second_events" in {row[0] for row in query(second, "SELECT tablename FROM pg_tables")}
    assert target.history() == ["20240101000000_events"]


def test_a_failing_database_is_named_and_the_others_are_migrated(target, second, two):
    query(second, "CREATE TABLE second_events (id int)")

    result = target.call("sqlmigrate_up", database=[target.alias, second], directory=None, json=True)

    assert result.code == 13
    objects = json.loads(result.out)
    assert [(o["database"], o["tenant"], o["outcome"]) for o in objects] == [
        ("target", None, "applied"),
        ("second", None, "failed"),
    ]
    assert objects[1]["error"]["file"] == str(two[second] / "20240101000000_events.sql")
    assert result.err.endswith(f"1 of 2 failed: second (shared set) ({two[second] / '20240101000000_events.sql'}:2)")
    assert target.history() == ["20240101000000_events"]


def test_all_databases_takes_every_alias_with_sql_migrations(target, second, two, settings, tmp_path):
    empty = tmp_path / "sql" / "default"
    empty.mkdir()
    settings.SQLMIGRATE_DIRS = {**two, "default": empty}

    result = target.call("sqlmigrate_up", database=None, all_databases=True, directory=None)
    status = target.call("sqlmigrate_status", database=None, all_databases=True, directory=None)

    assert (result.code, result.out) == (0, "3 databases: 1 up to date, 2 applied.\n")
    assert status.out == (
        "default (shared set): up to date, 0 applied\n"
        "second (shared set): up to date, 1 applied\n"
        "target (shared set): up to date, 1 applied\n"
    )


def test_each_databases_tenants_follow_its_shared_set(target, second, two, settings, tmp_path):
    fleet: TenantFleet = make_fleet(target, settings, tmp_path)
    settings.SQLMIGRATE_TENANT_DIR = {target.alias: fleet.directory, second: fleet.directory}
    fleet.migration("20240101000000_accounts", "CREATE TABLE accounts (id int);")
    fleet.create("tenant_a")
    query(second, "CREATE SCHEMA tenant_b")
    query(second, "CREATE TABLE tenant_b.accounts (id int)")  # its migration fails

    result = target.call("sqlmigrate_up", database=[target.alias, second], directory=None, keep_going=True)

    assert result.code == 13
    assert result.out == "2 databases: 2 applied.\n2 tenants: 1 applied, 1 failed.\n"
    assert "second:tenant_b: " in result.err
    assert result.err.endswith(f"1 of 4 failed: second:tenant_b ({fleet.directory / '20240101000000_accounts.sql'}:2)")
    assert fleet.history("tenant_a") == ["20240101000000_accounts"]

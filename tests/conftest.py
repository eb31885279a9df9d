"""Fixtures: a real PostgreSQL for the session, and per test a fresh database to migrate.

Every sqlmigrate test that takes ``target`` runs twice, on SQLite and on PostgreSQL. Without a
PostgreSQL the PostgreSQL half skips, unless ``SQLMIGRATE_REQUIRE_POSTGRES=1`` (as in CI), where
it fails.
"""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dj_database_url
import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from .postgres_server import postgres_url

ROOT = Path(__file__).resolve().parent.parent
ALIAS = "target"
_numbers = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def check_records_in_a_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``manage.py check`` records the files it found clean in the user's cache directory
    (``sqlmigrate_app.cache.CleanRecord``); the tests', and their subprocesses', go here."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    with postgres_url() as (url, how):
        if url is None:
            if os.environ.get("SQLMIGRATE_REQUIRE_POSTGRES") == "1":
                pytest.fail(f"PostgreSQL is required (SQLMIGRATE_REQUIRE_POSTGRES=1) but none can be had: {how}")
            pytest.skip(f"no PostgreSQL: {how}")
        yield url


@pytest.fixture
def no_sqlmigrate_settings(settings: Any, tmp_path: Path) -> Any:
    """Settings with every ``SQLMIGRATE_*`` removed and ``BASE_DIR`` in a temporary directory."""
    for name in [name for name in dir(settings._wrapped) if name.startswith("SQLMIGRATE_")]:
        delattr(settings, name)
    settings.BASE_DIR = tmp_path
    return settings


@dataclass
class CommandResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Target:
    """A fresh database registered as the Django alias ``target``, and a migrations directory."""

    vendor: str
    url: str
    directory: Path
    alias: str = ALIAS
    env: dict[str, str] = field(default_factory=dict)

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.directory / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def migration(self, migration_id: str, up: str, down: str = "", header: str = "") -> Path:
        return self.write(f"{migration_id}.sql", f"{header}-- UP\n{up}\n-- DOWN\n{down}\n")

    def call(self, command: str, *args: str, **options: Any) -> CommandResult:
        """Run a command in-process, as ``manage.py`` would; CommandError becomes its exit code."""
        out, err = io.StringIO(), io.StringIO()
        options.setdefault("database", self.alias)
        if command != "sqlmigrate_create" or "directory" not in options:
            options.setdefault("directory", str(self.directory))
        try:
            call_command(command, *args, stdout=out, stderr=err, no_color=True, **options)
        except CommandError as exc:
            return CommandResult(exc.returncode, out.getvalue(), err.getvalue() + str(exc))
        return CommandResult(0, out.getvalue(), err.getvalue())

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``python manage.py ...`` in a real process against this database."""
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args, "--dir", str(self.directory)],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": self.url, "DJANGO_SETTINGS_MODULE": "project.settings", **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def tables(self) -> set[str]:
        with connections[self.alias].cursor() as cursor:
            return set(connections[self.alias].introspection.table_names(cursor))

    def history(self) -> list[str]:
        return [row[0] for row in self.query("SELECT id FROM schema_migrations ORDER BY id")]


def register_alias(alias: str, url: str) -> None:
    config = dj_database_url.parse(url)
    full = connections.configure_settings({"default": {"ENGINE": "django.db.backends.dummy"}, alias: config})
    connections.settings[alias] = full[alias]


def unregister_alias(alias: str) -> None:
    connections[alias].close()
    del connections[alias]
    del connections.settings[alias]


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path, django_db_blocker: Any) -> Iterator[Target]:
    directory = tmp_path / "migrations"
    directory.mkdir()
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path / 'db.sqlite3'}", None
    else:
        server = request.getfixturevalue("postgres_server")
        name = f"sqlmigrate_test_{os.getpid()}_{next(_numbers)}"
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        url, drop = server.rsplit("/", 1)[0] + "/" + name, name
    with django_db_blocker.unblock():
        register_alias(ALIAS, url)
        try:
            yield Target(request.param, url, directory)
        finally:
            unregister_alias(ALIAS)
    if drop:
        with psycopg.connect(request.getfixturevalue("postgres_server"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {drop} WITH (FORCE)")

"""Fixtures: a real PostgreSQL for the session, and per test a fresh database to migrate.

Every sqlmigrate test that takes ``target`` runs twice, on SQLite and on PostgreSQL. Without a
PostgreSQL the PostgreSQL half skips, unless ``SQLMIGRATE_REQUIRE_POSTGRES=1`` (as in CI), where
it fails.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .support.postgres_server import postgres_url
from .support.target import ALIAS, Target, register_alias, unregister_alias

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

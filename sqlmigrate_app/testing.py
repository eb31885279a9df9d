"""Apply the SQL migrations to the test databases, under Django's test runner and pytest-django.

One line turns it on:

* Django's runner: ``TEST_RUNNER = "sqlmigrate_app.testing.SqlMigrateDiscoverRunner"``
* pytest-django: ``from sqlmigrate_app.testing import django_db_setup  # noqa: F401`` in conftest.py

Django creates each test database by running ``migrate``; while the test databases are set up,
the ``post_migrate`` signal of that run also applies the SQL migrations of the database (only the
pending ones, so ``--keepdb`` / ``--reuse-db`` work). It happens before Django clones databases
for ``--parallel``, so every clone has them too. Outside test setup, ``migrate`` never applies
SQL migrations: that stays an explicit deploy step (``manage.py sqlmigrate_up``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections
from django.db.models.signals import post_migrate
from django.test.runner import DiscoverRunner

from . import conf
from .errors import SqlMigrateError, plural
from .executor import Action
from .runner import MigrationRunner

DISPATCH_UID = "sqlmigrate_app.testing.apply_sql_migrations"


def migrate_test_database(using: str, verbosity: int = 1) -> int:
    """Apply the pending SQL migrations of one (test) database; return how many ran.

    Databases with no SQL migrations configured are left alone: aliases other than ``default``
    need an ``SQLMIGRATE_DIRS`` entry, and an implicit default directory that does not exist
    is skipped (the ``sqlmigrate.W001`` check says so).
    """
    if using not in conf.migrated_aliases():
        return 0
    if not conf.migrations_dir(using).exists() and not conf.dir_is_explicit(using):
        return 0
    name = connections[using].settings_dict["NAME"]
    try:
        results = MigrationRunner(using=using).migrate()
    except SqlMigrateError as exc:
        raise SqlMigrateError(
            f"cannot apply the SQL migrations to test database {name!r} (alias {using!r}): {exc}. "
            "If a kept test database (--keepdb / --reuse-db) ran an older version of a migration, "
            "recreate it (run once without --keepdb, or with --create-db)."
        ) from exc
    applied = sum(1 for result in results if result.action == Action.APPLIED)
    if verbosity >= 1 and applied:
        sys.stderr.write(f"Applied {plural(applied, 'SQL migration')} to test database for alias {using!r}.\n")
    return applied


@contextmanager
def applying_sql_migrations(verbosity: int = 1) -> Iterator[None]:
    """While active, ``migrate`` on a database also applies its SQL migrations (once per alias).

    Wrap the creation of test databases in it, e.g. in a custom test runner's ``setup_databases``.
    """
    done: set[str] = set()

    def receiver(using: str, **kwargs: Any) -> None:
        if using not in done:
            done.add(using)
            migrate_test_database(using, verbosity)

    post_migrate.connect(receiver, weak=False, dispatch_uid=DISPATCH_UID)
    try:
        yield
    finally:
        post_migrate.disconnect(dispatch_uid=DISPATCH_UID)


class SqlMigrateRunnerMixin:
    """Add to a custom ``DiscoverRunner`` subclass to give its test databases the SQL migrations."""

    verbosity: int

    def setup_databases(self, **kwargs: Any) -> Any:
        """Create the test databases with the SQL migrations applied."""
        with applying_sql_migrations(self.verbosity):
            return super().setup_databases(**kwargs)  # type: ignore[misc]


class SqlMigrateDiscoverRunner(SqlMigrateRunnerMixin, DiscoverRunner):
    """Django's test runner, with the SQL migrations applied to every test database."""


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    pass
else:

    @pytest.fixture(scope="session")
    def django_db_setup(request: pytest.FixtureRequest) -> None:
        """pytest-django's ``django_db_setup``, with the SQL migrations applied to each test database.

        Requesting its own name gives the fixture it overrides (pytest-django's), which creates
        the test databases (or reuses them with ``--reuse-db``) while SQL migrations are on.
        """
        with applying_sql_migrations(verbosity=request.config.option.verbose):
            request.getfixturevalue("django_db_setup")

"""The Django migrations that SQL migrations need applied first (``-- sqlmigrate: requires=``).

SQL often refers to tables Django's own migrations make (``auth_user``, an app's models). Whether
a required migration exists is known from Django's migration loader without a database (for
``validate`` and ``manage.py check``); whether it is applied, from Django's own history table
(before ``up`` runs anything).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from .backends import backend_for
from .errors import MigrationFileError, UnmetRequirement
from .files import Migration, Requirement


def _needed(migrations: Iterable[Migration]) -> list[tuple[Migration, Requirement]]:
    return [(migration, requirement) for migration in migrations for requirement in migration.requires]


def unknown_requirements(migrations: Iterable[Migration]) -> list[MigrationFileError]:
    """A bad-file error for each requirement naming an app label or migration that Django's
    loader does not know. Reads migration modules, never a database."""
    needed = _needed(migrations)
    if not needed:
        return []
    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    labels = {app_label for app_label, _ in known}
    errors = []
    for migration, requirement in needed:
        if (requirement.app_label, requirement.name) in known or _migrations_disabled(requirement.app_label):
            continue
        if requirement.app_label not in labels:
            reason = f"no installed app with the label {requirement.app_label!r} has migrations"
        else:
            names = [name for app_label, name in known if app_label == requirement.app_label]
            closest = difflib.get_close_matches(requirement.name, names, n=1)
            reason = f"app {requirement.app_label!r} has no migration {requirement.name!r}"
            reason += f"; did you mean {requirement.app_label}.{closest[0]}?" if closest else ""
        errors.append(MigrationFileError(migration.path, f"requires={requirement}: {reason}", requirement.line))
    return errors


def check_requirements(connection: BaseDatabaseWrapper, plan: Iterable[Migration], tenant: str | None = None) -> None:
    """Refuse a plan in which a migration requires a Django migration not applied on this
    database (or in this ``tenant``'s schema, see :func:`_applied`), naming the first one and the fix."""
    needed = _needed(plan)
    if not needed:
        return
    applied, where = _applied(connection, tenant)
    for migration, requirement in needed:
        if (requirement.app_label, requirement.name) in applied or _migrations_disabled(requirement.app_label):
            continue
        raise UnmetRequirement(
            f"{migration.path}:{requirement.line}: {migration.id} requires the Django migration {requirement}, "
            f"which is not applied {where}"
        )


def _applied(connection: BaseDatabaseWrapper, tenant: str | None) -> tuple[Iterable[tuple[str, str]], str]:
    """Django's applied migrations where the plan runs, and where that is and its fix. A tenant
    schema with a ``django_migrations`` of its own (django-tenants keeps one in each) has its
    own: the default schema's records every ``TENANT_APPS`` migration without having run it."""
    if tenant is not None:
        own = backend_for(connection).tenant_django_migrations(tenant)
        if own is not None:
            return own, f"in schema {tenant!r}: run Django's migrations there first (django-tenants: migrate_schemas)"
    where = f"on database {connection.alias!r}: run 'manage.py migrate --database {connection.alias}' first"
    return MigrationRecorder(connection).applied_migrations(), where


def _migrations_disabled(app_label: str) -> bool:
    """Whether the app's migrations are switched off (``MIGRATION_MODULES[app] = None``, as
    pytest-django's ``--nomigrations`` does): its tables are then made without being recorded."""
    try:
        module, _ = MigrationLoader.migrations_module(app_label)
    except LookupError:  # not an installed app
        return False
    return module is None

"""System checks (``manage.py check``): configuration mistakes and malformed migration files.

They read settings and files only, never a database, so they run anywhere ``check`` does (that
each database with SQL migrations has a backend is told by its connection's class and driver).

Every check lists each directory and checks every file name and timestamp. It reads a file only
when it is new, changed (by its ``stat()`` signature) or was not clean last time: the files it
found clean are recorded on disk (:class:`~.cache.CleanRecord`). So a malformed file is reported
by every check, and at 10,000 files a check with nothing changed costs a ``stat()`` per file,
not a parse. ``sqlmigrate_validate`` and ``sqlmigrate_up`` read every file regardless.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections

from . import conf
from .backends import backend_for
from .cache import CleanRecord
from .directory import directory_problem, load_directory
from .errors import EmptyMigration, MigrationFileError, SqlMigrateError
from .files import Migration
from .requirements import unknown_requirements
from .statements import with_statements_checked

TAG = "sqlmigrate"


@register(TAG)
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """The settings, the directories and every migration file in them."""
    return [
        *_check_table(),
        *_check_timeouts(),
        *_check_batch_bytes(),
        *_check_lint(),
        *_check_tenants(),
        *_check_drift_ignore(),
        *_check_directories(),
    ]


def _check_table() -> list[CheckMessage]:
    table = getattr(settings, "SQLMIGRATE_TABLE", None)
    if table is None or conf.is_table_name(table):
        return []
    return [
        Error(
            f"SQLMIGRATE_TABLE {table!r} is not a valid table name.",
            hint=f"Use {conf.TABLE_NAME_RULE}.",
            id="sqlmigrate.E002",
        )
    ]


def _check_timeouts() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for read in (conf.lock_timeout, conf.statement_timeout):
        try:
            read()
        except SqlMigrateError as exc:
            errors.append(Error(str(exc) + ".", hint="Examples: '500ms', '5s', '2min'.", id="sqlmigrate.E005"))
    return errors


def _check_batch_bytes() -> list[CheckMessage]:
    """E013: ``SQLMIGRATE_BATCH_BYTES`` is a whole number of bytes (0 turns batches off)."""
    try:
        conf.batch_bytes()
    except SqlMigrateError as exc:
        return [
            Error(
                str(exc) + ".",
                hint="E.g. 1048576 (the default), or 0 to send each migration alone.",
                id="sqlmigrate.E013",
            )
        ]
    return []


def _check_lint() -> list[CheckMessage]:
    try:
        conf.lint_settings()
    except SqlMigrateError as exc:
        hint = 'E.g. SQLMIGRATE_LINT = {"exclude": ["prefer-robust-stmts"], "pg_version": "16", "timeout": 60}.'
        return [Error(str(exc) + ".", hint=hint, id="sqlmigrate.E008")]
    return []


def _check_tenants() -> list[CheckMessage]:
    """E010: ``SQLMIGRATE_TENANT_DIR`` is a path or a dict of known aliases, and comes with a
    ``SQLMIGRATE_TENANTS`` that imports as a function (not called: it may query a database)."""
    value = getattr(settings, "SQLMIGRATE_TENANT_DIR", None)
    if not value:
        return []
    problems = []
    if isinstance(value, dict):
        unknown = sorted(alias for alias in value if alias not in settings.DATABASES)
        problems += [
            f"SQLMIGRATE_TENANT_DIR names the database alias {alias!r}, which is not in DATABASES." for alias in unknown
        ]
    elif not isinstance(value, (str, Path)):
        problems.append("SQLMIGRATE_TENANT_DIR must be a directory, or a dict of database alias -> directory.")
    try:
        conf.tenants_function()
    except SqlMigrateError as exc:
        problems.append(f"{exc}.")
    hint = (
        'E.g. SQLMIGRATE_TENANTS = "sqlmigrate_app.tenants.django_tenants_schemas" (see the tenants page of the docs).'
    )
    return [Error(problem, hint=hint, id="sqlmigrate.E010") for problem in problems]


def _tenant_directories() -> list[tuple[str, Path]]:
    """The tenant sets' directories as (setting, path)."""
    value = getattr(settings, "SQLMIGRATE_TENANT_DIR", None)
    if isinstance(value, dict):
        return [
            (f"SQLMIGRATE_TENANT_DIR[{alias!r}]", Path(directory)) for alias, directory in value.items() if directory
        ]
    return [("SQLMIGRATE_TENANT_DIR", Path(value))] if isinstance(value, (str, Path)) and value else []


def _check_drift_ignore() -> list[CheckMessage]:
    try:
        conf.drift_ignore()
    except SqlMigrateError as exc:
        hint = 'E.g. SQLMIGRATE_DRIFT_IGNORE = ["extension pg_stat_statements", "schema monitoring", "* monitoring.*"].'
        return [Error(str(exc) + ".", hint=hint, id="sqlmigrate.E012")]
    return []


def _directories() -> tuple[list[CheckMessage], list[tuple[str, Path]]]:
    """The configured directories as (setting, path), and errors in SQLMIGRATE_DIRS itself."""
    errors: list[CheckMessage] = []
    named: list[tuple[str, Path]] = []
    per_alias = getattr(settings, "SQLMIGRATE_DIRS", None) or {}
    if not isinstance(per_alias, dict):
        errors.append(
            Error(
                "SQLMIGRATE_DIRS must be a dict of database alias -> directory.",
                hint='E.g. SQLMIGRATE_DIRS = {"analytics": BASE_DIR / "migrations_sql/analytics"}.',
                id="sqlmigrate.E006",
            )
        )
        per_alias = {}
    for alias, directory in per_alias.items():
        if alias not in settings.DATABASES:
            errors.append(
                Error(
                    f"SQLMIGRATE_DIRS names the database alias {alias!r}, which is not in DATABASES.",
                    hint=f"DATABASES has: {', '.join(sorted(settings.DATABASES))}.",
                    id="sqlmigrate.E004",
                )
            )
        named.append((f"SQLMIGRATE_DIRS[{alias!r}]", Path(directory)))
    if getattr(settings, "SQLMIGRATE_DIR", None):
        named.append(("SQLMIGRATE_DIR", Path(settings.SQLMIGRATE_DIR)))
    return errors, named + _tenant_directories()


def _check_directories() -> list[CheckMessage]:
    messages, named = _directories()
    if not conf.dir_is_explicit() and not any(conf.is_default_dir(directory) for _, directory in named):
        named.append(("the default directory", conf.default_dir()))
    checked: set[Path] = set()
    for setting, directory in named:
        problem = directory_problem(directory)
        if problem is not None:
            messages.append(_directory_message(setting, directory, problem))
        elif directory.resolve() not in checked:
            checked.add(directory.resolve())
            errors, read = check_files(directory)
            messages += [_file_message(error) for error in errors]
            messages += [
                Error(
                    str(error),
                    hint="Name an existing Django migration ('manage.py showmigrations' lists them).",
                    id="sqlmigrate.E007",
                )
                for error in unknown_requirements(read)
            ]
    return messages


def _directory_message(setting: str, directory: Path, problem: str) -> CheckMessage:
    """E001, but only the W001 warning for the default directory not made yet, whether a setting
    names it or not: adding the app, or the README's settings, must not stop ``runserver``."""
    if conf.is_default_dir(directory) and not directory.exists():
        return Warning(
            f"No SQL migrations directory: {directory} does not exist.",
            hint="Create it with 'manage.py sqlmigrate_create NAME', or set SQLMIGRATE_DIR.",
            id="sqlmigrate.W001",
        )
    return Error(
        f"{setting} {directory} {problem}.",
        hint="Create the directory, or point the setting at the one that holds your .sql migrations.",
        id="sqlmigrate.E001",
    )


def check_files(directory: Path) -> tuple[list[MigrationFileError], list[Migration]]:
    """What ``sqlmigrate_validate`` says of the files of ``directory`` (not of the history), and
    the migrations read to say it: only the files the :class:`~.cache.CleanRecord` does not
    hold. A file with ``requires=`` is never recorded, so it is always read: whether the Django
    migration it names exists can change without the file changing."""
    record = CleanRecord(directory)
    found = load_directory(directory, record)
    checked = with_statements_checked(found)
    record.keep(checked)
    return checked.errors, [*found.migrations, *found.repeatables]


def _file_message(error: MigrationFileError) -> CheckMessage:
    """A malformed file is an error; an UP section not written yet only a warning, so a file
    fresh from ``sqlmigrate_create`` does not stop ``runserver`` (``up`` still refuses it)."""
    if isinstance(error, EmptyMigration):
        return Warning(str(error), hint="Write the UP section before deploying.", id="sqlmigrate.W002")
    return Error(str(error), hint="Run 'manage.py sqlmigrate_validate' for details.", id="sqlmigrate.E003")


@register(TAG)
def check_databases(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """Each database with SQL migrations is one sqlmigrate has a backend for (E009), and each
    with a tenant set one with schemas (E011). A default left empty (``"default": {}``, Django's
    dummy engine, for a project of named databases only) is not one with SQL migrations; a
    driver Django cannot load is Django's to report."""
    errors: list[CheckMessage] = []
    for alias in dict.fromkeys([*conf.migrated_aliases(), *_tenant_aliases()]):
        engine = connections.settings.get(alias, {}).get("ENGINE")
        if engine is None or (alias == DEFAULT_DB_ALIAS and engine == "django.db.backends.dummy"):
            continue  # not in DATABASES (E004, E010 say so), or empty
        try:
            backend = backend_for(connections[alias])
        except ImproperlyConfigured:
            continue
        except SqlMigrateError as exc:
            hint = "Point the alias at PostgreSQL (with psycopg 3) or SQLite, or leave it out of SQLMIGRATE_DIRS."
            errors.append(Error(f"{exc}.", hint=hint, id="sqlmigrate.E009"))
            continue
        if _has_tenant_set(alias) and not backend.has_schemas:
            hint = "Name only PostgreSQL aliases: SQLMIGRATE_TENANT_DIR = {alias: directory}."
            errors.append(Error(f"{backend.schemas_unsupported()}.", hint=hint, id="sqlmigrate.E011"))
    return errors


def _has_tenant_set(alias: str) -> bool:
    """Whether ``alias`` has a tenant set (a setting that is no directory is E010's to report)."""
    try:
        return conf.tenant_dir(alias) is not None
    except SqlMigrateError:
        return False


def _tenant_aliases() -> list[str]:
    """The aliases a ``SQLMIGRATE_TENANT_DIR`` dict names."""
    value = getattr(settings, "SQLMIGRATE_TENANT_DIR", None)
    return list(value) if isinstance(value, dict) else []

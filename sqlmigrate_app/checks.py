"""System checks (``manage.py check``): configuration mistakes and malformed migration files.

They read settings and files only, never a database, so they run anywhere ``check`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.db import DEFAULT_DB_ALIAS

from . import conf
from .errors import SqlMigrateError
from .files import directory_problem, load_directory, with_statements_checked

TAG = "sqlmigrate"


@register(TAG)
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """The settings, the directories and every migration file in them."""
    return [*_check_table(), *_check_timeouts(), *_check_directories()]


def _check_table() -> list[CheckMessage]:
    table = getattr(settings, "SQLMIGRATE_TABLE", None)
    if table is None or (isinstance(table, str) and conf.TABLE_NAME_RE.match(table)):
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
    return errors, named


def _check_directories() -> list[CheckMessage]:
    messages, named = _directories()
    if not any(
        name == "SQLMIGRATE_DIR" or name.startswith(f"SQLMIGRATE_DIRS[{DEFAULT_DB_ALIAS!r}") for name, _ in named
    ):
        default = conf.default_dir()
        if not default.exists():
            messages.append(
                Warning(
                    f"No SQL migrations directory: {default} does not exist.",
                    hint="Create it with 'manage.py sqlmigrate_create NAME', or set SQLMIGRATE_DIR.",
                    id="sqlmigrate.W001",
                )
            )
        else:
            named.append(("the default directory", default))
    checked: set[Path] = set()
    for setting, directory in named:
        problem = directory_problem(directory)
        if problem is not None:
            messages.append(
                Error(
                    f"{setting} {directory} {problem}.",
                    hint="Create the directory, or point the setting at the one that holds your .sql migrations.",
                    id="sqlmigrate.E001",
                )
            )
        elif directory.resolve() not in checked:
            checked.add(directory.resolve())
            messages += [
                Error(str(error), hint="Run 'manage.py sqlmigrate_validate' for details.", id="sqlmigrate.E003")
                for error in with_statements_checked(load_directory(directory)).errors
            ]
    return messages

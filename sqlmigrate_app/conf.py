"""Every ``SQLMIGRATE_*`` setting, read in one place, with its default."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import NamedTuple

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from .errors import ConfigurationError
from .files import Timeouts, parse_duration

DEFAULT_TABLE = "schema_migrations"
TABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
TABLE_NAME_RULE = "letters, digits and _, not starting with a digit, at most 63 characters"
DEFAULT_LINT_TIMEOUT = 60.0  # seconds squawk may take over one section


def is_table_name(value: object) -> bool:
    """Whether ``value`` is a history table name sqlmigrate accepts (:data:`TABLE_NAME_RULE`):
    the whole of it, so not ``"name\\n"``, which a ``$`` would let through."""
    return isinstance(value, str) and TABLE_NAME_RE.fullmatch(value) is not None


def check_alias(using: str) -> str:
    """Return ``using`` if it is a key of ``DATABASES``; else raise one clear line."""
    if using not in connections.settings:
        known = ", ".join(sorted(connections.settings))
        raise ConfigurationError(f"unknown database alias {using!r} (DATABASES has: {known})")
    return using


def default_dir() -> Path:
    """``BASE_DIR / "migrations_sql"`` (the current directory's, without ``BASE_DIR``)."""
    base = getattr(settings, "BASE_DIR", None)
    return Path(base if base is not None else Path.cwd()) / "migrations_sql"


def migrations_dir(using: str = DEFAULT_DB_ALIAS) -> Path:
    """``SQLMIGRATE_DIRS[alias]``, else ``SQLMIGRATE_DIR``, else ``BASE_DIR / "migrations_sql"``."""
    per_alias = getattr(settings, "SQLMIGRATE_DIRS", {}) or {}
    if using in per_alias:
        return Path(per_alias[using])
    configured = getattr(settings, "SQLMIGRATE_DIR", None)
    if configured:
        return Path(configured)
    return default_dir()


def is_default_dir(directory: Path) -> bool:
    """True when ``directory`` is :func:`default_dir`, however it is spelled."""
    return Path(directory).resolve() == default_dir().resolve()


def dir_is_explicit(using: str = DEFAULT_DB_ALIAS) -> bool:
    """True when a setting names a directory of ``using`` other than the default one (False: the
    default, set or not: ``SQLMIGRATE_DIR = BASE_DIR / "migrations_sql"`` means what leaving it
    out means, so a missing one is only the W001 warning)."""
    return not is_default_dir(migrations_dir(using))


def migrated_aliases() -> list[str]:
    """The databases that have SQL migrations: ``default`` and every alias of ``SQLMIGRATE_DIRS``.

    Test databases of these aliases get their migrations applied (see :mod:`sqlmigrate_app.testing`).
    """
    per_alias = getattr(settings, "SQLMIGRATE_DIRS", {}) or {}
    return [DEFAULT_DB_ALIAS, *sorted(alias for alias in per_alias if alias != DEFAULT_DB_ALIAS)]


def table_name() -> str:
    """``SQLMIGRATE_TABLE``, the history table's name."""
    return str(getattr(settings, "SQLMIGRATE_TABLE", None) or DEFAULT_TABLE)


def _duration(setting: str) -> str | None:
    value = getattr(settings, setting, None)
    if value in (None, ""):
        return None
    normalised = parse_duration(str(value))
    if normalised is None:
        raise ConfigurationError(f"{setting} {value!r} is not a duration like 500ms, 5s or 2min")
    return normalised


def lock_timeout() -> str | None:
    """Default PostgreSQL ``lock_timeout`` for each migration (``None``: the server's)."""
    return _duration("SQLMIGRATE_LOCK_TIMEOUT")


def statement_timeout() -> str | None:
    """Default PostgreSQL ``statement_timeout`` for each migration (``None``: the server's)."""
    return _duration("SQLMIGRATE_STATEMENT_TIMEOUT")


def timeouts() -> Timeouts:
    """The two timeouts every migration runs with unless its directives say otherwise."""
    return Timeouts(lock_timeout(), statement_timeout())


def retries() -> int:
    """``SQLMIGRATE_RETRIES``: how many more times ``up`` tries a migration that failed on its
    lock timeout (default 0; ``--retries`` overrides it)."""
    value = getattr(settings, "SQLMIGRATE_RETRIES", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"SQLMIGRATE_RETRIES {value!r} is not a whole number of at least 0")
    return value


def schema_file(using: str = DEFAULT_DB_ALIAS) -> Path | None:
    """``SQLMIGRATE_SCHEMA_FILE``: where ``sqlmigrate_dump`` writes the schema of ``using``, and
    ``up``/``down`` rewrite it (None: nowhere). A path is the ``default`` database's; a dict
    gives one per alias."""
    value = getattr(settings, "SQLMIGRATE_SCHEMA_FILE", None)
    if isinstance(value, dict):
        value = value.get(using)
    elif using != DEFAULT_DB_ALIAS:
        value = None
    return Path(value) if value else None


class LintSettings(NamedTuple):
    """``SQLMIGRATE_LINT``: squawk rules never to report, the PostgreSQL version to assume, and
    how many seconds squawk may take over one section before it is stopped."""

    exclude: tuple[str, ...] = ()
    pg_version: str | None = None
    timeout: float = DEFAULT_LINT_TIMEOUT


def lint_settings() -> LintSettings:
    """``SQLMIGRATE_LINT``, e.g. ``{"exclude": ["prefer-robust-stmts"], "pg_version": "15", "timeout": 60}``."""
    value = getattr(settings, "SQLMIGRATE_LINT", None) or {}
    unknown = set(value) - set(LintSettings._fields) if isinstance(value, dict) else {"(not a dict)"}
    if unknown:
        raise ConfigurationError(
            f"SQLMIGRATE_LINT {value!r}: unknown keys {', '.join(sorted(unknown))} "
            f"(known: {', '.join(LintSettings._fields)})"
        )
    exclude = value.get("exclude") or ()
    if isinstance(exclude, str) or not all(isinstance(rule, str) for rule in exclude):
        raise ConfigurationError(f"SQLMIGRATE_LINT['exclude'] {exclude!r} must be a list of squawk rule names")
    pg_version = value.get("pg_version")
    timeout = value.get("timeout", DEFAULT_LINT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise ConfigurationError(f"SQLMIGRATE_LINT['timeout'] {timeout!r} must be a number of seconds above 0")
    return LintSettings(tuple(exclude), str(pg_version) if pg_version is not None else None, float(timeout))


def drift_ignore() -> tuple[str, ...]:
    """``SQLMIGRATE_DRIFT_IGNORE``: the objects ``sqlmigrate_drift`` leaves out, as ``fnmatch``
    patterns of ``KIND NAME`` as it prints them, e.g. ``["extension pg_stat_statements",
    "schema monitoring", "* monitoring.*"]``. A pattern without a space (no kind) and not
    starting with ``*`` could match nothing, so it is refused."""
    value = getattr(settings, "SQLMIGRATE_DRIFT_IGNORE", None) or ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigurationError(f"SQLMIGRATE_DRIFT_IGNORE {value!r} must be a list of patterns")
    for pattern in value:
        if not isinstance(pattern, str) or not (" " in pattern or pattern.startswith("*")):
            raise ConfigurationError(
                f"SQLMIGRATE_DRIFT_IGNORE pattern {pattern!r} names no kind: a pattern matches 'KIND NAME' as "
                "sqlmigrate_drift prints it ('table public.orders'): e.g. 'table public.tmp_*' or '* monitoring.*'"
            )
    return tuple(value)

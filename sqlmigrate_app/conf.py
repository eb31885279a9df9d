"""Every ``SQLMIGRATE_*`` setting, read in one place, with its default."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils.module_loading import import_string

from .errors import ConfigurationError, SqlMigrateError
from .files import Timeouts, parse_duration

DEFAULT_TABLE = "schema_migrations"
TABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
TABLE_NAME_RULE = "letters, digits and _, not starting with a digit, at most 63 characters"
# At most this many bytes of migrations travel in one message (SQLMIGRATE_BATCH_BYTES): the
# server parses a whole message before running any of it, and holds it while it runs; past a
# megabyte the round trip saved is a small part of the time the message takes (docs/settings.md).
DEFAULT_BATCH_BYTES = 1 << 20
DEFAULT_LINT_TIMEOUT = 60.0  # seconds squawk may take over one section
# A tenant schema's name: what django-tenants accepts, so quoting it is never the only defence.
SCHEMA_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,63}")
SCHEMA_NAME_RULE = "letters, digits, _ and -, at most 63 characters, not starting with pg_"


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


def all_databases() -> list[str]:
    """``--all-databases``: every alias with SQL migrations (:func:`migrated_aliases`) or a tenant
    set (an alias of a ``SQLMIGRATE_TENANT_DIR`` dict), but a ``default`` left empty
    (``"default": {}``, Django's dummy engine, for a project of named databases only)."""
    per_alias = getattr(settings, "SQLMIGRATE_TENANT_DIR", None)
    tenant_aliases = sorted(per_alias) if isinstance(per_alias, dict) else []
    aliases = list(dict.fromkeys([*migrated_aliases(), *tenant_aliases]))
    engine = connections.settings.get(DEFAULT_DB_ALIAS, {}).get("ENGINE")
    if engine in (None, "django.db.backends.dummy"):
        aliases.remove(DEFAULT_DB_ALIAS)
    return aliases


def is_schema_name(value: object) -> bool:
    """Whether ``value`` is a tenant schema name sqlmigrate takes (:data:`SCHEMA_NAME_RULE`)."""
    return (
        isinstance(value, str) and SCHEMA_NAME_RE.fullmatch(value) is not None and not value.lower().startswith("pg_")
    )


def check_schema_name(value: object, source: str) -> str:
    """``value``, a tenant schema name ``source`` gave; else one line naming it."""
    if not is_schema_name(value):
        raise ConfigurationError(f"{source}: {value!r} is not a tenant schema name ({SCHEMA_NAME_RULE})")
    assert isinstance(value, str)
    return value


def tenant_dir(using: str = DEFAULT_DB_ALIAS) -> Path | None:
    """``SQLMIGRATE_TENANT_DIR``: the directory of the tenant set, the migrations each tenant
    schema of ``using`` gets. A path is every database's; a dict gives one per alias (an alias
    not in it has no tenants). None: the database has no tenants."""
    value = getattr(settings, "SQLMIGRATE_TENANT_DIR", None)
    if isinstance(value, dict):
        value = value.get(using)
    if value and not isinstance(value, (str, os.PathLike)):
        raise ConfigurationError(f"SQLMIGRATE_TENANT_DIR {value!r} is not a directory (see manage.py check)")
    return Path(value) if value else None


def tenants_function() -> Callable[[str], Iterable[Any]]:
    """``SQLMIGRATE_TENANTS``, imported: a function of a database alias returning its tenant schemas."""
    value = getattr(settings, "SQLMIGRATE_TENANTS", None)
    if not value:
        raise ConfigurationError(
            "SQLMIGRATE_TENANTS is not set: give the dotted path of a function of the database alias that returns "
            "the tenant schemas (for django-tenants: 'sqlmigrate_app.tenants.django_tenants_schemas')"
        )
    if callable(value):
        return value  # type: ignore[no-any-return]
    try:
        function = import_string(str(value))
    except ImportError as exc:
        raise ConfigurationError(f"SQLMIGRATE_TENANTS {value!r} cannot be imported: {exc}") from exc
    if not callable(function):
        raise ConfigurationError(f"SQLMIGRATE_TENANTS {value!r} is not a function")
    return function  # type: ignore[no-any-return]


def tenants(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The tenant schemas of ``using``, as ``SQLMIGRATE_TENANTS`` lists them: each name checked
    (:func:`check_schema_name`), each once, sorted. Called once per command and database."""
    function = tenants_function()
    source = f"SQLMIGRATE_TENANTS (database {using!r})"
    try:
        names = list(function(using))
    except SqlMigrateError:
        raise
    except Exception as exc:
        raise ConfigurationError(f"{source} failed: {type(exc).__name__}: {exc}") from exc
    return sorted({check_schema_name(name, source) for name in names})


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


def batch_bytes() -> int:
    """``SQLMIGRATE_BATCH_BYTES``: how many bytes of consecutive transactional migrations ``up``
    and ``down`` may send in one message (default 1 MiB; 0: each migration alone)."""
    value = getattr(settings, "SQLMIGRATE_BATCH_BYTES", DEFAULT_BATCH_BYTES)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"SQLMIGRATE_BATCH_BYTES {value!r} is not a whole number of bytes, at least 0")
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

"""Every ``SQLMIGRATE_*`` setting, read in one place, with its default."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

DEFAULT_TABLE = "schema_migrations"
TABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def migrations_dir(using: str = "default") -> Path:
    """``SQLMIGRATE_DIRS[alias]``, else ``SQLMIGRATE_DIR``, else ``BASE_DIR / "migrations_sql"``."""
    per_alias = getattr(settings, "SQLMIGRATE_DIRS", {}) or {}
    if using in per_alias:
        return Path(per_alias[using])
    configured = getattr(settings, "SQLMIGRATE_DIR", None)
    if configured:
        return Path(configured)
    base = getattr(settings, "BASE_DIR", None)
    return Path(base if base is not None else Path.cwd()) / "migrations_sql"


def table_name() -> str:
    return str(getattr(settings, "SQLMIGRATE_TABLE", None) or DEFAULT_TABLE)


def lock_timeout() -> str | None:
    """Default PostgreSQL ``lock_timeout`` for each migration (``None``: the server's)."""
    return getattr(settings, "SQLMIGRATE_LOCK_TIMEOUT", None)


def statement_timeout() -> str | None:
    """Default PostgreSQL ``statement_timeout`` for each migration (``None``: the server's)."""
    return getattr(settings, "SQLMIGRATE_STATEMENT_TIMEOUT", None)

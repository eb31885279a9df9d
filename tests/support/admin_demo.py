"""Shared set-up of the admin tests: the demo migrations in a target database, three applied."""

from __future__ import annotations

import re
import shutil
from typing import Any

from django.urls import reverse

from .target import ROOT

DEMO_IDS = sorted(path.name[:-4] for path in (ROOT / "migrations_sql").glob("*.sql"))
APPLIED_IDS, PENDING_IDS = DEMO_IDS[:3], DEMO_IDS[3:]
ROW_RE = re.compile(r'data-state="(\w+)">.*?/change/[^"]*">([^<]+)</a>', re.DOTALL)


def copy_demo_migrations(target: Any, settings: Any) -> None:
    """The demo's migration files in ``target.directory``, and the admin pointed at them."""
    for migration_id in DEMO_IDS:
        shutil.copy(ROOT / "migrations_sql" / f"{migration_id}.sql", target.directory)
    settings.SQLMIGRATE_DIRS = {target.alias: str(target.directory)}


def use_demo_directory(target: Any, settings: Any) -> None:
    """The admin (and ``target.call``) pointed at the demo's own ``migrations_sql``, read only."""
    target.directory = ROOT / "migrations_sql"
    settings.SQLMIGRATE_DIRS = {target.alias: str(target.directory)}


def apply_demo_migrations(target: Any) -> None:
    result = target.call("sqlmigrate_up", to=APPLIED_IDS[-1])
    assert result.code == 0, result.text
    assert target.history() == APPLIED_IDS


def list_url(**params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in {"database": "target", **params}.items())
    return reverse("admin:sqlmigrate_app_sqlmigration_changelist") + "?" + query


def detail_url(migration_id: str) -> str:
    return reverse("admin:sqlmigrate_app_sqlmigration_change", args=[migration_id]) + "?database=target"


def listed_rows(html: str) -> list[tuple[str, str]]:
    """(state, id) of every row of the list page, top to bottom."""
    return ROW_RE.findall(html)

"""The schema file: what the migrations produce, for review (dbmate's ``schema.sql`` habit).

The snapshot ``verify`` compares (:mod:`.snapshot`), then the ids of the applied migrations in
order. ``sqlmigrate_dump`` writes it; ``up`` and ``down`` rewrite it after a successful run when
``SQLMIGRATE_SCHEMA_FILE`` is set, so every pull request that adds a migration shows its effect
on the schema; ``sqlmigrate_dump --check`` fails in CI when it was not rewritten.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from . import conf, snapshot
from .runner import MigrationRunner

HEADER = (
    "-- The database schema as the migrations leave it, then the migrations applied, in order.\n"
    "-- Written by sqlmigrate_dump (and by sqlmigrate_up and sqlmigrate_down when SQLMIGRATE_SCHEMA_FILE\n"
    "-- is set): do not edit it, review it.\n\n"
)
APPLIED_HEADING = "-- Applied migrations\n"


def render(runner: MigrationRunner) -> str:
    """The schema file's text for ``runner``'s database, as it is now."""
    schema = snapshot.take(runner.connection, runner.history.table)
    applied = runner.history.read()
    return HEADER + schema.text() + APPLIED_HEADING + "".join(f"{migration_id}\n" for migration_id in applied)


def write(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it holds it already; whether it changed."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def differences(path: Path, text: str) -> list[str]:
    """How the file at ``path`` differs from ``text`` (a unified diff; empty when it does not)."""
    current = path.read_text(encoding="utf-8") if path.is_file() else ""
    if current == text:
        return []
    return list(
        difflib.unified_diff(current.splitlines(), text.splitlines(), f"{path}", "the database", n=2, lineterm="")
    )


def rewrite(runner: MigrationRunner) -> Path | None:
    """After a successful ``up`` or ``down``: rewrite ``SQLMIGRATE_SCHEMA_FILE`` when it is set
    (and differs); the path written, or None."""
    path = conf.schema_file(runner.using)
    if path is None:
        return None
    return path if write(path, render(runner)) else None

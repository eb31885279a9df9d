"""Write a new migration file from a template (``sqlmigrate_create``), at a free timestamp."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .errors import ConfigurationError, SqlMigrateError
from .files import MAX_SLUG, display_name

TEMPLATE = """\
-- {title}
-- Directives, if needed, go here, e.g. '-- sqlmigrate: no-transaction' for CREATE INDEX CONCURRENTLY.

-- UP
-- Forward SQL. Prefer IF NOT EXISTS so a retried deploy is harmless.


-- DOWN
-- SQL that undoes UP, in reverse order (IF EXISTS). Leave empty for an irreversible migration.

"""


def normalise_name(name: str) -> str:
    """``"Add User Preferences-Table"`` -> ``add_user_preferences_table``; refuse paths, empties
    and letters that have no ASCII form once accents are dropped (``Café`` is ``cafe``, but
    ``таблица`` is refused, not dropped: a guessed transliteration is not the name the author
    meant, and dropping it would leave another name or none)."""
    if "/" in name or "\\" in name or ".." in name:
        raise ConfigurationError(f"migration name {name!r} must not contain a path")
    folded = "".join(char for char in unicodedata.normalize("NFKD", name) if not unicodedata.combining(char))
    lost = [char for char in folded if char.isalnum() and not char.isascii()]
    if lost:
        raise ConfigurationError(
            f"migration name {name!r} has a letter with no ASCII form ({lost[0]!r}): file names take a-z, "
            "0-9 and _ (accents are dropped: Café is cafe); write it in ASCII, e.g. add_users_table"
        )
    slug = re.sub(r"[^a-z0-9]+", "_", folded.strip().lower()).strip("_")
    if not slug:
        raise ConfigurationError(f"migration name {name!r} is empty: give letters or digits, e.g. add_users_table")
    if len(slug) > MAX_SLUG:
        raise ConfigurationError(f"migration name {name!r} is too long: at most {MAX_SLUG} characters")
    return slug


def create_migration_file(directory: Path, name: str, now: datetime | None = None) -> Path:
    """Write a new migration from the template, at the first free second from ``now`` (UTC)."""
    slug = normalise_name(name)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        taken = {path.name[:14] for path in directory.iterdir()}
    except OSError as exc:
        raise SqlMigrateError(f"cannot use migrations directory {directory}: {exc.strerror or exc}") from None
    moment = now or datetime.now(timezone.utc)
    while moment.strftime("%Y%m%d%H%M%S") in taken:
        moment += timedelta(seconds=1)
    path = directory / f"{moment:%Y%m%d%H%M%S}_{slug}.sql"
    try:
        with path.open("x", encoding="utf-8", newline="\n") as handle:
            handle.write(TEMPLATE.format(title=display_name(path.stem)))
    except OSError as exc:
        raise SqlMigrateError(f"cannot create {path}: {exc.strerror or exc}") from None
    return path

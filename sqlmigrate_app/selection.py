"""Which migrations ``verify`` and ``lint`` look at: the ones pending on the database (in a pull
request's pipeline, the new ones), all of them, or the ones named."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from . import conf
from .directory import MigrationSet
from .errors import ConfigurationError
from .files import Migration
from .history import repeatable_rows
from .planner import resolve
from .repeatables import Ordering
from .runner import MigrationRunner
from .tenants import read_histories


def migration_id(name: str) -> str:
    """A command-line argument without its directory: ``git diff --name-only`` prints paths; the
    rest (an id, a file name, a bare timestamp) is :func:`~.planner.resolve`'s."""
    return Path(name).name.removesuffix(".sql")


def under_test(
    found: MigrationSet,
    names: Sequence[str],
    every: bool,
    applied_ids: Callable[[], Collection[str]],
) -> list[Migration]:
    """The migrations named (ids, file names, paths or timestamps), or ``every`` one, or else the ones
    not in ``applied_ids()``; in id order, the repeatable ones after the versioned ones, in the
    order they run. Only the last reads the database."""
    if names and every:
        raise ConfigurationError("give migration ids or --all, not both")
    every_one = [*found.migrations, *Ordering(found.repeatables).order]
    if every:
        return every_one
    if names:
        files = {migration.id: migration for migration in every_one}
        ids = {resolve(migration_id(name), files, str(found.directory), option="") for name in names}
        return [migration for migration in every_one if migration.id in ids]
    applied = applied_ids()
    return [migration for migration in every_one if migration.id not in applied]


def applied_on(runner: MigrationRunner) -> set[str]:
    """The ids in the history of the runner's database, read as ``sqlmigrate_status`` reads it
    (and nothing else of that database read); a repeatable's only while its file is the one that
    ran."""
    return {row.id for row in runner.status() if row.stored_checksum is not None and not row.state.runs}


def applied_on_every_tenant(using: str, found: MigrationSet) -> set[str]:
    """The ids of the tenant set ``found`` that every tenant of ``using`` (``SQLMIGRATE_TENANTS``)
    has applied, from one read of all their histories: the others are pending somewhere. A
    tenant whose history cannot be read counts as having none."""
    histories = read_histories(using, conf.tenants(using), found).values()
    ran = {migration.id: migration.checksum for migration in found.repeatables}
    applied = [
        set(history.applied) | {i for i, row in repeatable_rows(history.applied).items() if ran.get(i) == row.checksum}
        if history.error is None
        else set()
        for history in histories
    ]
    return set.intersection(*applied) if applied else set()


def tenant_set_dir(using: str) -> Path:
    """The directory of ``using``'s tenant set; one line when it has none."""
    directory = conf.tenant_dir(using)
    if directory is None:
        raise ConfigurationError(f"database {using!r} has no tenant set: set SQLMIGRATE_TENANT_DIR")
    return directory

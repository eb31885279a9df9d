"""PostgreSQL lock and safety lint of migrations, by squawk (the ``lint`` extra installs it).

squawk gets one section at a time on its standard input (linting the whole file would flag the
DOWN section's ``DROP``s as if they ran on the way up), with what sqlmigrate knows: whether the
migration runs in a transaction (``--assume-in-transaction`` unless ``no-transaction``), and that
a ``lock-timeout``/``statement-timeout`` directive or setting sets those timeouts before it, so
``require-lock-timeout``/``require-statement-timeout`` are excluded for that migration. Its
0-based line and column become the file's, counted from the section's first line. Its own
``-- squawk-ignore`` comments work as they do anywhere.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from . import conf
from .errors import HistoryTableError, LintUnavailable, SqlMigrateError
from .files import Migration, Section, load_directory
from .runner import MigrationRunner
from .selection import applied_on, under_test

EXTRA = "django-sqlmigrate[lint]"
# The squawk rules a timeout sqlmigrate sets makes moot.
TIMEOUT_RULES = {"lock_timeout": "require-lock-timeout", "statement_timeout": "require-statement-timeout"}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing squawk reported, placed in the migration file."""

    migration_id: str
    path: Path
    section: str  # "up" or "down"
    line: int
    column: int
    rule: str
    level: str
    message: str
    help: str | None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.rule}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        """The ``sqlmigrate_lint --json`` object."""
        return {
            "id": self.migration_id,
            "file": str(self.path),
            "section": self.section,
            "line": self.line,
            "column": self.column,
            "rule": self.rule,
            "level": self.level,
            "message": self.message,
            "help": self.help,
        }


def applies_to(connection: BaseDatabaseWrapper) -> bool:
    """Whether ``connection``'s database is one squawk knows: PostgreSQL."""
    return connection.vendor == "postgresql"


def squawk() -> str:
    """The squawk executable: on ``PATH``, else beside this interpreter (a virtualenv's ``bin``,
    whether or not it is activated)."""
    found = shutil.which("squawk") or shutil.which("squawk", path=sysconfig.get_path("scripts"))
    if found is None:
        raise LintUnavailable(f"squawk is not installed: pip install '{EXTRA}' (the squawk-cli package ships it)")
    return found


def lint_selected(
    using: str,
    directory: str | Path | None = None,
    names: Sequence[str] = (),
    every: bool = False,
    exclude: Iterable[str] = (),
    down: bool = False,
) -> tuple[list[Migration], list[Finding]]:
    """Lint the migrations named (or ``every`` one, or the ones pending on ``using``'s database);
    return them and what squawk found."""
    executable = squawk()
    found = load_directory(Path(directory) if directory else conf.migrations_dir(using))
    found.raise_first_error()
    migrations = under_test(found, names, every, lambda: applied_on(MigrationRunner(using, found.directory)))
    return migrations, lint(migrations, exclude, down, executable)


def lint_pending(runner: MigrationRunner) -> list[Finding]:
    """``validate --lint``: the pending migrations among the readable files (the others are
    ``validate``'s to report), linted."""
    found = load_directory(runner.directory)
    try:
        applied = runner.history.read()
    except HistoryTableError:
        return []  # validate reports it
    return lint(under_test(found, (), False, lambda: applied))


def lint(
    migrations: Iterable[Migration], exclude: Iterable[str] = (), down: bool = False, executable: str | None = None
) -> list[Finding]:
    """squawk's findings on the UP sections of ``migrations`` (and the DOWN sections with ``down``),
    rules in ``exclude`` and ``SQLMIGRATE_LINT["exclude"]`` left out."""
    executable = executable or squawk()
    settings = conf.lint_settings()
    defaults = {"lock_timeout": conf.lock_timeout(), "statement_timeout": conf.statement_timeout()}
    excluded = {*settings.exclude, *exclude}
    findings = []
    for migration in migrations:
        arguments = squawk_arguments(migration, excluded, defaults, settings.pg_version)
        sections = [("up", migration.up)] + ([("down", migration.down)] if down and migration.reversible else [])
        for name, section in sections:
            findings += _lint_section(executable, arguments, migration, name, section)
    return findings


def squawk_arguments(
    migration: Migration, excluded: set[str], defaults: dict[str, str | None], pg_version: str | None
) -> list[str]:
    """squawk's options for one migration: its transaction, the rules its timeouts make moot."""
    rules = set(excluded)
    for setting, rule in TIMEOUT_RULES.items():
        if getattr(migration, setting) or defaults.get(setting):
            rules.add(rule)
    arguments = ["--assume-in-transaction" if migration.transactional else "--no-assume-in-transaction"]
    arguments += [f"--exclude={rule}" for rule in sorted(rules)]
    if pg_version:
        arguments.append(f"--pg-version={pg_version}")
    return arguments


def _lint_section(
    executable: str, arguments: list[str], migration: Migration, name: str, section: Section
) -> list[Finding]:
    """squawk on one section through its standard input; its places turned into the file's."""
    command = [executable, "--reporter=json", f"--stdin-filepath={migration.path}", *arguments]
    try:
        done = subprocess.run(command, input=section.sql, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise LintUnavailable(f"squawk ({executable}) cannot run: {exc}; reinstall it: pip install '{EXTRA}'") from exc
    if done.returncode not in (0, 1) or not done.stdout.strip():
        said = " ".join((done.stderr or done.stdout).split()) or f"exit status {done.returncode}"
        raise SqlMigrateError(f"{migration.path}: squawk failed: {said}")
    return [
        Finding(
            migration.id,
            migration.path,
            name,
            section.line + int(report["line"]),
            int(report["column"]) + 1,
            str(report["rule_name"]),
            str(report["level"]).lower(),
            str(report["message"]),
            report.get("help"),
        )
        for report in json.loads(done.stdout)
    ]

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

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from . import conf
from .backends import backend_for
from .directory import load_directory
from .errors import ConfigurationError, HistoryTableError, LintFailed, LintUnavailable, database_errors, printable
from .files import Migration, Section, Timeouts
from .runner import MigrationRunner
from .selection import applied_on, applied_on_every_tenant, tenant_set_dir, under_test

EXTRA = "django-sqlmigrate[lint]"
# The squawk rules a timeout sqlmigrate sets makes moot.
LOCK_TIMEOUT_RULE, STATEMENT_TIMEOUT_RULE = "require-lock-timeout", "require-statement-timeout"
USAGE_ERROR = 2  # squawk's exit status for options it refuses
SHOWN_CHARACTERS = 200  # of what squawk printed, in the error when it printed no report


class Level(str, Enum):
    """How squawk ranks a finding: a rule's ``warning``, or an ``error`` (SQL it cannot parse)."""

    WARNING = "warning"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing squawk reported, placed in the migration file."""

    migration_id: str
    path: Path
    section: str  # "up" or "down"
    line: int
    column: int
    rule: str
    level: Level
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
            "level": self.level.value,
            "message": self.message,
            "help": self.help,
        }


def applies_to(connection: BaseDatabaseWrapper) -> bool:
    """Whether ``connection``'s database is one squawk knows (its backend says: PostgreSQL)."""
    return backend_for(connection).lintable


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


def lint_tenant_set(
    using: str, names: Sequence[str] = (), every: bool = False, exclude: Iterable[str] = (), down: bool = False
) -> tuple[list[Migration], list[Finding]]:
    """Lint the tenant set's files once, whatever the number of tenants: the migrations named (or
    ``every`` one, or those some tenant of ``using`` has not applied); return them and what
    squawk found."""
    executable = squawk()
    found = load_directory(tenant_set_dir(using))
    found.raise_first_error()
    migrations = under_test(found, names, every, lambda: applied_on_every_tenant(using, found))
    return migrations, lint(migrations, exclude, down, executable)


def lint_pending(runner: MigrationRunner) -> list[Finding]:
    """``validate --lint``: the pending migrations among the readable files (the others are
    ``validate``'s to report), linted."""
    found = load_directory(runner.directory)
    try:
        with database_errors(runner.connection):
            applied = runner.history.read()
    except HistoryTableError:
        return []  # validate reports it
    return lint(under_test(found, (), False, lambda: applied))


def lint(
    migrations: Iterable[Migration], exclude: Iterable[str] = (), down: bool = False, executable: str | None = None
) -> list[Finding]:
    """squawk's findings on the UP sections of ``migrations`` (and the DOWN sections with ``down``),
    rules in ``exclude`` (``--exclude``) and ``SQLMIGRATE_LINT["exclude"]`` left out."""
    executable = executable or squawk()
    settings = conf.lint_settings()
    exclude = tuple(exclude)
    _check_options(executable, exclude, settings)
    defaults = conf.timeouts()
    excluded = {*settings.exclude, *exclude}
    findings = []
    for migration in migrations:
        arguments = squawk_arguments(migration, excluded, defaults, settings.pg_version)
        sections = [("up", migration.up)] + ([("down", migration.down)] if down and migration.reversible else [])
        for name, section in sections:
            findings += _lint_section(executable, arguments, migration, name, section, settings.timeout)
    return findings


def _check_options(executable: str, exclude: tuple[str, ...], settings: conf.LintSettings) -> None:
    """Have squawk check the rules and version sqlmigrate passes on, before any migration: a rule
    it does not know is the mistake of the option or setting that names it, not of a file."""
    version = [f"--pg-version={settings.pg_version}"] if settings.pg_version else []
    given = [
        (f"--exclude {','.join(exclude)}", [f"--exclude={rule}" for rule in exclude], "not a rule squawk knows"),
        (
            "SQLMIGRATE_LINT",
            [f"--exclude={rule}" for rule in settings.exclude] + version,
            "squawk refuses its exclude or pg_version",
        ),
    ]
    for source, arguments, refused in given:
        if not arguments:
            continue
        done = _run_squawk([executable, "--reporter=json", *arguments], "", settings.timeout, f"checking {source}")
        if done.returncode == USAGE_ERROR:
            raise ConfigurationError(f"{source}: {refused}: {_printed(done)}")


def squawk_arguments(migration: Migration, excluded: set[str], defaults: Timeouts, pg_version: str | None) -> list[str]:
    """squawk's options for one migration: its transaction, the rules its timeouts make moot."""
    timeouts = migration.timeouts(defaults)
    rules = set(excluded)
    rules |= {LOCK_TIMEOUT_RULE} if timeouts.lock else set()
    rules |= {STATEMENT_TIMEOUT_RULE} if timeouts.statement else set()
    arguments = ["--assume-in-transaction" if migration.transactional else "--no-assume-in-transaction"]
    arguments += [f"--exclude={rule}" for rule in sorted(rules)]
    if pg_version:
        arguments.append(f"--pg-version={pg_version}")
    return arguments


def _lint_section(
    executable: str, arguments: list[str], migration: Migration, name: str, section: Section, timeout: float
) -> list[Finding]:
    """squawk on one section through its standard input; its places turned into the file's."""
    command = [executable, "--reporter=json", f"--stdin-filepath={migration.path}", *arguments]
    done = _run_squawk(command, section.sql, timeout, f"linting the {name.upper()} section of {migration.path}")
    reports = _reports(done.stdout) if done.returncode in (0, 1) else None
    if reports is None:
        raise LintFailed(
            f"squawk ({executable}) gave no report on the {name.upper()} section of {migration.path} "
            f"(exit status {done.returncode}); it printed: {_printed(done)}"
        )
    return [
        Finding(
            migration.id,
            migration.path,
            name,
            section.line + report["line"],
            report["column"] + 1,
            report["rule_name"],
            Level(report["level"].lower()),
            report["message"],
            report["help"],
        )
        for report in reports
    ]


def _run_squawk(command: list[str], sql: str, timeout: float, doing: str) -> subprocess.CompletedProcess[str]:
    """squawk on ``sql``; stopped, with any process it started, after ``timeout`` seconds (and on
    Ctrl-C): it runs in a session of its own, whose process group is killed."""
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            errors="replace",  # garbage in its output is quoted, not a UnicodeDecodeError
            start_new_session=True,
        )
    except OSError as exc:
        raise LintUnavailable(f"squawk ({command[0]}) cannot run: {exc}; reinstall it: pip install '{EXTRA}'") from exc
    with process:
        try:
            out, err = process.communicate(sql, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _kill(process)
            raise LintFailed(
                f"squawk ({command[0]}) did not finish {doing} within {timeout:g} s and was stopped "
                "(SQLMIGRATE_LINT['timeout'] sets how long it may take)"
            ) from exc
        except BaseException:
            _kill(process)
            raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _kill(process: subprocess.Popen[str]) -> None:
    """Kill squawk's process group (squawk and whatever it started); the process alone where
    there are no process groups."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()


def _reports(output: str) -> list[dict[str, Any]] | None:
    """squawk's JSON findings, each with the keys and types read from it; None when its output
    is anything else."""
    try:
        reports = json.loads(output)
    except ValueError:
        return None
    if not isinstance(reports, list) or not all(_is_report(report) for report in reports):
        return None
    return [{**report, "help": report.get("help")} for report in reports]


def _is_report(report: object) -> bool:
    """Whether one item of squawk's JSON is a finding with the keys (and types) :func:`lint` reads,
    at a level squawk has (:class:`Level`)."""
    return (
        isinstance(report, dict)
        and all(type(report.get(key)) is int for key in ("line", "column"))
        and all(isinstance(report.get(key), str) for key in ("rule_name", "level", "message"))
        and report["level"].lower() in {level.value for level in Level}
        and isinstance(report.get("help"), (str, type(None)))
    )


def _printed(done: subprocess.CompletedProcess[str]) -> str:
    """The start of what squawk printed (its error output, else its output): its first line, at
    most :data:`SHOWN_CHARACTERS` of it, on one line; or ``(nothing)``."""
    text = (done.stderr or "").strip() or (done.stdout or "").strip()
    if not text:
        return "(nothing)"
    shown = text.splitlines()[0][:SHOWN_CHARACTERS]
    return printable(shown) + (" ..." if len(shown) < len(text) else "")

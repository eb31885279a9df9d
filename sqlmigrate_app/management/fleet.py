"""What the commands that work on many histories share (``up``, ``down``, ``redo``, ``status``,
``validate``, ``repair``): the options that choose them (``--database`` repeated,
``--all-databases``, ``--shared``, ``--tenants``, ``--tenant``, ``--shard``) and run them
(``--jobs``, ``--keep-going``); whether a command runs as a fleet; and how a fleet run is
printed: a progress line on a terminal, each failure and a summary in a pipeline, every migration
at ``-v 2``, ``--json``, exit code 13 when some histories failed.

A command runs as a fleet when it works on several databases or on tenants; on one database's
shared set alone it does what it did before tenants existed.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from collections import Counter
from collections.abc import Iterable, Sequence
from time import perf_counter
from typing import Any

from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS

from .. import conf
from ..errors import ConfigurationError, SqlMigrateError, plural, printable
from ..executor import Action, Result
from ..fleet import (
    DEFAULT_JOBS,
    FleetInterrupted,
    FleetReporter,
    Operation,
    Outcome,
    TargetPlan,
    TargetResult,
    run_fleet,
)
from ..runner import MigrationRunner
from ..tenants import Selection, Shard, Target, select_targets
from .base import EXIT_SOME_FAILED, SqlMigrateCommand, rewrite_schema_file

# Failures (or histories not up to date) a summary names; the others are counted.
NAMED = 5
# Seconds between two redraws of the progress line.
REDRAW = 0.1
SOME_FAILED = (EXIT_SOME_FAILED, "some tenants or databases failed (each other one was done or had nothing to do)")


def add_selection_arguments(parser: ArgumentParser) -> None:
    """``--all-databases``, ``--shared``, ``--tenants``, ``--tenant NAME`` and ``--shard K/N``."""
    parser.add_argument(
        "--all-databases",
        action="store_true",
        help="Every database with SQL migrations (default, SQLMIGRATE_DIRS, a SQLMIGRATE_TENANT_DIR dict).",
    )
    parser.add_argument(
        "--shared",
        action="store_true",
        help="The shared set (SQLMIGRATE_DIR, in the database's default schema). Without --shared, --tenants "
        "or --tenant: the shared set, then every tenant where a tenant set is configured.",
    )
    parser.add_argument(
        "--tenants", action="store_true", help="Every tenant schema SQLMIGRATE_TENANTS lists (SQLMIGRATE_TENANT_DIR)."
    )
    parser.add_argument("--tenant", action="append", metavar="NAME", help="This tenant schema (repeat it for several).")
    parser.add_argument(
        "--shard", metavar="K/N", help="Only the tenants of share K of N (0 <= K < N), a stable hash of their names."
    )


def add_set_arguments(parser: ArgumentParser, what: str) -> None:
    """``--shared`` and ``--tenants`` of ``verify``, ``lint`` and ``dump``, which look at the
    files of a set, not at each tenant (``what``: what they do to it)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--shared", action="store_true", help=f"{what} the shared set only (SQLMIGRATE_DIR), as before tenants."
    )
    group.add_argument(
        "--tenants",
        action="store_true",
        help=f"{what} the tenant set only (SQLMIGRATE_TENANT_DIR), once, in a schema of its own. Default: the "
        "shared set, then the tenant set where one is configured (with migration ids: the shared set).",
    )


def chosen_sets(options: dict[str, Any], named: bool = False) -> tuple[bool, bool]:
    """Whether ``verify``, ``lint`` or ``dump`` look at the shared set, and at the tenant set:
    ``--shared``, ``--tenants``, else both where a tenant set is configured (the shared set
    alone when migrations are ``named``: their ids are the shared set's, as before tenants)."""
    if options.get("shared") or options.get("tenants"):
        return bool(options.get("shared")), bool(options.get("tenants"))
    return True, not named and conf.tenant_dir(options["database"]) is not None


def add_run_arguments(parser: ArgumentParser) -> None:
    """``--jobs N`` and ``--keep-going``."""
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help=f"Tenants migrated at once in each database, one connection each (default {DEFAULT_JOBS}; never more "
        "than the server has connections to spare).",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="Go on past a failing tenant (default: start no more after the first failure; running ones finish).",
    )


def chosen_databases(options: dict[str, Any]) -> list[str]:
    """``--database`` (repeated, or a string from ``call_command``), or ``--all-databases``."""
    given = options.get("database")
    names = [given] if isinstance(given, str) else list(given or [])
    if options.get("all_databases"):
        if names:
            raise ConfigurationError("--all-databases and --database: give one or the other")
        return conf.all_databases()
    return names or [DEFAULT_DB_ALIAS]


def chosen_selection(options: dict[str, Any]) -> Selection:
    """The histories ``--shared``, ``--tenants``, ``--tenant`` and ``--shard`` choose."""
    named = options.get("tenant") or ()
    named = (named,) if isinstance(named, str) else tuple(named)
    shard = Shard.parse(options["shard"]) if options.get("shard") else None
    if options.get("tenants") and named:
        raise ConfigurationError("--tenants and --tenant: give one or the other")
    if not (options.get("shared") or options.get("tenants") or named):
        return Selection(shard=shard)
    every = bool(options.get("tenants"))
    return Selection(bool(options.get("shared")), every, named, explicit=every or bool(named), shard=shard)


def fleet_targets(options: dict[str, Any], force: bool = False) -> list[Target] | None:
    """The histories a command works on as a fleet (several databases, or tenants; or ``force``,
    for ``--json``); None for one database's shared set alone, whose alias becomes
    ``options["database"]``: the command then does what it always did."""
    targets = select_targets(chosen_databases(options), chosen_selection(options))
    if not force and len(targets) == 1 and targets[0].schema is None:
        options["database"] = targets[0].database
        return None
    return targets


def name(target: Target, databases: int = 1) -> str:
    """How output names a history: ``acme`` (a tenant), ``default:acme`` among several
    databases, ``default (shared set)``."""
    if target.schema is None:
        return f"{target.database} (shared set)"
    return target.schema if databases == 1 else str(target)


def location(error: SqlMigrateError) -> str:
    """Where a history's failure is: its file and line, else the message."""
    if error.path is not None:
        return f"{error.path}:{error.line}" if error.line else str(error.path)
    return printable(str(error))


class FleetPrinter(FleetReporter):
    """Prints a fleet run: on a terminal, a progress line updated in place (histories done of
    all, failures so far, the rate); each failure on stderr; with ``-v 2``, each migration and
    each history. ``--json`` prints none of it (the JSON says it all)."""

    def __init__(self, command: SqlMigrateCommand, quiet: bool = False) -> None:
        self.command = command
        self.quiet = quiet
        self.progress = not quiet and command.verbosity >= 1 and command.stdout.isatty()
        self.total = self.done = self.failures = self.databases = 0
        self.began = self.drawn = 0.0
        self.shown = False

    def planned(self, targets: Sequence[Target]) -> None:
        self.total, self.databases = len(targets), len({target.database for target in targets})
        self.began = perf_counter()

    def migration(self, target: Target, result: Result) -> None:
        self.line(f"{name(target, self.databases)}: {result.action} {result.migration.id} ({result.elapsed_ms:.0f} ms)")

    def waiting(self, target: Target, message: str) -> None:
        self.line(f"{name(target, self.databases)}: {message}")

    def finished(self, result: TargetResult) -> None:
        self.done += 1
        if result.failed:
            self.failures += 1
            if not self.quiet:
                self.erase()
                self.command.stderr.write(f"{name(result.target, self.databases)}: {printable(str(result.error))}")
        elif result.outcome not in (Outcome.UP_TO_DATE, Outcome.UNCHANGED):
            self.line(f"{name(result.target, self.databases)}: {result.outcome} ({result.elapsed_ms:.0f} ms)")
        self.draw(self.done == self.total)

    def line(self, text: str) -> None:
        """A line at ``-v 2``, above the progress line."""
        if not self.quiet and self.command.verbosity >= 2:
            self.erase()
            self.command.say(text, level=2)
            self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        """The progress line, at most every :data:`REDRAW` seconds."""
        now = perf_counter()
        if not self.progress or not (force or now - self.drawn >= REDRAW):
            return
        rate = self.done / max(now - self.began, 1e-9)
        failed = f", {self.failures} failed" if self.failures else ""
        self.command.stdout.write(f"\r\x1b[K{self.done}/{self.total} done{failed}, {rate:.1f}/s", ending="")
        self.command.stdout.flush()
        self.drawn, self.shown = now, True

    def erase(self) -> None:
        """Clear the progress line, so the next line starts at the margin."""
        if self.shown:
            self.command.stdout.write("\r\x1b[K", ending="")
            self.shown = False

    def close(self) -> None:
        """End the progress line."""
        if self.shown:
            self.command.stdout.write("")
            self.shown = False


def counts(results: Iterable[TargetResult], noun: str) -> str:
    """``1000 tenants: 998 up to date, 1 applied, 1 failed.``"""
    found = Counter(result.outcome for result in results)
    parts = ", ".join(f"{found[outcome]} {outcome}" for outcome in Outcome if found[outcome])
    return f"{plural(sum(found.values()), noun)}: {parts or 'none'}."


def run_fleet_command(
    command: SqlMigrateCommand, targets: list[Target], operation: Operation, options: dict[str, Any]
) -> list[TargetResult]:
    """Run ``operation`` on ``targets`` with the command's options, print the outcome (the summary,
    or ``--json``), and raise exit 13 when some failed (130 / 143 when interrupted)."""
    printer = FleetPrinter(command, quiet=bool(options.get("json")))
    try:
        results = run_fleet(
            targets,
            operation,
            jobs=options.get("jobs"),
            keep_going=bool(options.get("keep_going")),
            reporter=printer,
            directory=options.get("directory"),
            lock_wait_timeout=options.get("wait"),
            retries=options.get("retries"),
        )
    except FleetInterrupted as exc:
        printer.close()
        report(command, exc.results, options)
        raise
    printer.close()
    report(command, results, options)
    if any(result.failed for result in results):
        raise CommandError(failures_line(results), returncode=EXIT_SOME_FAILED)
    return results


def report(command: SqlMigrateCommand, results: list[TargetResult], options: dict[str, Any]) -> None:
    """``--json``, or the summary: a line for the shared sets, one for the tenants."""
    if options.get("json"):
        command.stdout.write(json.dumps([result.as_dict() for result in results], indent=2))
        return
    shared = [result for result in results if result.target.schema is None]
    tenants = [result for result in results if result.target.schema is not None]
    if shared:
        command.say(counts(shared, "database"))
    if tenants or not shared:
        command.say(counts(tenants, "tenant"))


def failures_line(results: list[TargetResult]) -> str:
    """``2 of 1000 failed: acme (tenant/0002_x.sql:3), beta (...)`` (the first :data:`NAMED`)."""
    failed = [result for result in results if result.failed]
    databases = len({result.target.database for result in results})
    named = ", ".join(
        f"{name(result.target, databases)} ({location(result.error)})"
        if result.error
        else name(result.target, databases)
        for result in failed[:NAMED]
    )
    more = f" and {len(failed) - NAMED} more" if len(failed) > NAMED else ""
    return f"{len(failed)} of {len(results)} failed: {named}{more}"


def rewrite_schema_files(
    command: SqlMigrateCommand, results: list[TargetResult], directory: str | None, done: str
) -> None:
    """After a fleet run without failures, each changed shared set's schema file, as after a run
    on one database (``SQLMIGRATE_SCHEMA_FILE``)."""
    for result in results:
        changed = [item for item in result.results if item.action != Action.SKIPPED]
        if result.target.schema is None and changed:
            rewrite_schema_file(command, MigrationRunner(result.target.database, directory), changed, done)


def print_fleet_plan(command: SqlMigrateCommand, plans: list[TargetPlan], title: str, nothing: str) -> None:
    """``--plan`` of a fleet: each history with something to do and what; those with nothing,
    counted; each refusal on stderr, and exit 13 when there is one."""
    databases = len({plan.target.database for plan in plans})
    refused = [plan for plan in plans if plan.error is not None]
    for plan in refused:
        command.stderr.write(f"{name(plan.target, databases)}: {printable(str(plan.error))}")
    todo = [plan for plan in plans if plan.planned]
    if todo:
        command.say(command.style.MIGRATE_HEADING(title))
    for plan in todo:
        ids = ", ".join(getattr(item, "id", "") or getattr(item, "migration_id", "") for item in plan.planned)
        command.say(f"  {name(plan.target, databases)}: {ids}")
    idle = len(plans) - len(todo) - len(refused)
    if idle or not plans:
        command.say(f"{plural(idle, 'history' if idle == 1 else 'histories')}: {nothing}")
    if refused:
        raise CommandError(
            f"{len(refused)} of {len(plans)} refused: "
            + ", ".join(f"{name(plan.target, databases)}" for plan in refused[:NAMED]),
            returncode=EXIT_SOME_FAILED,
        )


def one_script_target(targets: list[Target]) -> Target:
    """``--sql`` prints the script of one history."""
    if len(targets) != 1:
        raise ConfigurationError(
            f"--sql prints the script of one history, and {len(targets)} are chosen: add --shared, or name one --tenant"
        )
    return targets[0]

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ...errors import ProblemKind, plural, printable
from ...lint import applies_to, lint_pending
from ...runner import MigrationRunner
from ...state import Problem
from ...tenants import FleetProblem, Target, validate_fleet
from ..base import EXIT_CODES, SqlMigrateCommand, exit_code, problem_codes_line
from ..fleet import add_selection_arguments, fleet_targets


class Command(SqlMigrateCommand):
    """``sqlmigrate_validate``: every problem of files and history."""

    help = "Check migration files and history: checksums, missing files, bad files, order."
    # Every kind but pending: a migration not applied yet is no problem of the files or the history.
    exit_codes_help = problem_codes_line("valid", [kind for kind in EXIT_CODES if kind != ProblemKind.PENDING])
    several_databases = True

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument("--json", action="store_true", help="Print the problems as a JSON array.")
        parser.add_argument(
            "--lint", action="store_true", help="Lint the pending migrations with squawk too (PostgreSQL)."
        )
        add_selection_arguments(parser)

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome."""
        targets = fleet_targets(options)
        if targets is not None:
            self.run_fleet(targets, options)
            return
        runner = self.runner(options)
        problems = runner.validate()
        if options["lint"]:
            problems += self.lint(runner)
        if options["json"]:
            self.stdout.write(json.dumps([problem.as_dict() for problem in problems], indent=2))
        else:
            for problem in problems:
                self.stderr.write(f"{problem.kind}: {printable(problem.message)}")
        if problems:
            raise CommandError(
                f"validation failed: {plural(len(problems), 'problem')}",
                returncode=exit_code(problem.kind for problem in problems),
            )
        if not options["json"]:
            self.say(self.style.SUCCESS("All migrations are valid."))

    def run_fleet(self, targets: list[Target], options: dict[str, Any]) -> None:
        """Every problem of the shared sets, of the tenant sets' files (once each) and of each
        tenant's history; ``--lint`` is for one database's shared set."""
        if options["lint"]:
            raise CommandError("--lint lints one database's shared set: add --shared")
        problems = validate_fleet(targets, options["directory"])
        if options["json"]:
            self.stdout.write(json.dumps([problem.as_dict() for problem in problems], indent=2))
        else:
            for problem in problems:
                self.stderr.write(f"{where(problem)}: {problem.problem.kind}: {printable(problem.problem.message)}")
        if problems:
            raise CommandError(
                f"validation failed: {plural(len(problems), 'problem')}",
                returncode=exit_code(problem.problem.kind for problem in problems),
            )
        if not options["json"]:
            self.say(self.style.SUCCESS("All migrations are valid."))

    def lint(self, runner: MigrationRunner) -> list[Problem]:
        """squawk's findings on the pending migrations, as problems; none on SQLite."""
        if not applies_to(runner.connection):
            database = runner.connection.display_name
            self.stderr.write(f"lint is for PostgreSQL: database {runner.using!r} is {database}, skipped.")
            return []
        findings = lint_pending(runner)
        return [
            Problem(ProblemKind.LINT, f"{finding}" + (f" ({finding.help})" if finding.help else ""))
            for finding in findings
        ]


def where(problem: FleetProblem) -> str:
    """``default (shared set)``, ``default: tenant set`` or ``default:acme``."""
    if problem.tenant is not None:
        return f"{problem.database}:{problem.tenant}"
    return f"{problem.database}: tenant set" if problem.tenant_set else f"{problem.database} (shared set)"

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ...errors import ProblemKind, plural, printable
from ...lint import applies_to, lint_pending
from ...runner import MigrationRunner
from ...state import Problem
from ..base import EXIT_CODES, SqlMigrateCommand, exit_code, problem_codes_line


class Command(SqlMigrateCommand):
    """``sqlmigrate_validate``: every problem of files and history."""

    help = "Check migration files and history: checksums, missing files, bad files, order."
    # Every kind but pending: a migration not applied yet is no problem of the files or the history.
    exit_codes_help = problem_codes_line("valid", [kind for kind in EXIT_CODES if kind != ProblemKind.PENDING])

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument("--json", action="store_true", help="Print the problems as a JSON array.")
        parser.add_argument(
            "--lint", action="store_true", help="Lint the pending migrations with squawk too (PostgreSQL)."
        )

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome."""
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

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError, CommandParser

from ...errors import plural
from ..base import EXIT_CODES_HELP, SqlMigrateCommand, exit_code


class Command(SqlMigrateCommand):
    """``sqlmigrate_validate``: every problem of files and history."""

    help = "Check migration files and history: checksums, missing files, bad files, order."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        """The parser, with the exit codes in ``--help``."""
        return super().create_parser(prog_name, subcommand, epilog=EXIT_CODES_HELP, **kwargs)

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument("--json", action="store_true", help="Print the problems as a JSON array.")

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome."""
        problems = self.runner(options).validate()
        if options["json"]:
            self.stdout.write(json.dumps([problem.as_dict() for problem in problems], indent=2))
        else:
            for problem in problems:
                self.stderr.write(f"{problem.kind}: {problem.message}")
        if problems:
            raise CommandError(
                f"validation failed: {plural(len(problems), 'problem')}",
                returncode=exit_code(problem.kind for problem in problems),
            )
        if not options["json"]:
            self.say(self.style.SUCCESS("All migrations are valid."))

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ...drift import WHERE, Drift, DriftReporter, drift
from ...drift_sql import fix_script
from ...errors import ProblemKind, plural, printable
from ...files import Migration
from ..base import EXIT_CODES, EXIT_DRIFT, SqlMigrateCommand, exit_code, exit_codes_line, print_changes
from .sqlmigrate_verify import ThrowawayLines


class Command(SqlMigrateCommand):
    """``sqlmigrate_drift``: the live schema against the one its applied migrations produce."""

    help = (
        "Rebuild the migrations applied on the database in a throwaway database and compare the two schemas: "
        "what was added, dropped or changed by hand. The database is only read."
    )
    exit_codes_help = exit_codes_line(
        "the schema is the one its applied migrations produce",
        [
            (EXIT_CODES[ProblemKind.MODIFIED], "an applied migration's file changed: not compared"),
            (EXIT_CODES[ProblemKind.MISSING], "an applied migration's file is missing: not compared"),
            (EXIT_DRIFT, "drifted: the schema differs"),
        ],
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        output = parser.add_mutually_exclusive_group()
        output.add_argument("--json", action="store_true", help="Print one JSON object.")
        output.add_argument(
            "--sql",
            action="store_true",
            help="Print SQL that would bring the schema back to the migrations' (never run by sqlmigrate).",
        )
        parser.add_argument("--keep", action="store_true", help="Keep the throwaway database and print its name.")
        parser.add_argument(
            "--rebuild-on",
            metavar="ALIAS",
            help="Make the throwaway database where this alias's are made (e.g. a CI service), not on the "
            "database's own server, which is then only read (default: --database).",
        )

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome."""
        quiet = options["json"] or options["sql"]
        reporter = DriftLines(self) if quiet else TextReporter(self)
        result = drift(
            options["database"], options["directory"], options["keep"], reporter, rebuild_on=options["rebuild_on"]
        )
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        elif options["sql"] and result.comparison is not None:
            self.stdout.write(fix_script(result), ending="")
        elif not quiet:
            self.report(result)
        if result.problems:
            kinds = {problem.kind for problem in result.problems}
            raise CommandError(f"{result.summary()}: restore the files, then run it again", returncode=exit_code(kinds))
        if result.drifted:
            hint = "" if options["sql"] else "; sqlmigrate_drift --sql prints SQL that would undo it"
            raise CommandError(result.summary() + hint, returncode=EXIT_DRIFT)

    def report(self, result: Drift) -> None:
        """The differences, or what kept drift from comparing; the objects left out."""
        for problem in result.problems:
            self.say(f"  {printable(problem.message)}", level=0)
        if result.comparison is None:
            return
        print_changes(self, result.comparison.changes, WHERE, "  ")
        ignored = result.comparison.ignored
        if ignored:
            self.say(f"Left out by SQLMIGRATE_DRIFT_IGNORE: {plural(len(ignored), 'differing object')}.")
        if not result.drifted:
            self.say(self.style.SUCCESS(f"No drift: {result.summary()}."))


class DriftLines(ThrowawayLines, DriftReporter):
    """Throwaway databases dropped, kept or left behind, on stderr (stdout may be ``--json`` or
    ``--sql``), as verify says them."""


class TextReporter(DriftLines):
    """Also says where the rebuild runs."""

    def rebuilding(self, database: str, migrations: list[Migration]) -> None:
        """Say what is rebuilt, and where."""
        count = plural(len(migrations), "applied migration")
        self.command.say(f"Rebuilding {count} in the throwaway database {database}...")

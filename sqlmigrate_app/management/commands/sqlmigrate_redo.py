from __future__ import annotations

from argparse import ArgumentParser
from time import perf_counter
from typing import Any

from ...executor import Action
from ...fleet import Redo
from ..base import (
    EXIT_SCHEMA_FILE_NOT_WRITTEN,
    POOLER,
    ProgressReporter,
    SqlMigrateCommand,
    exit_codes_line,
    print_summary,
    rewrite_schema_file,
)
from ..fleet import (
    SOME_FAILED,
    add_run_arguments,
    add_selection_arguments,
    fleet_targets,
    rewrite_schema_files,
    run_fleet_command,
)

REDONE = "rolled back and applied again, recorded in the history"


class Command(SqlMigrateCommand):
    """``sqlmigrate_redo [N]``: roll back the newest applied migrations and apply them again."""

    help = "Roll back the last N applied SQL migrations (default 1) and apply them again."
    several_databases = True
    exit_codes_help = exit_codes_line(
        "redone, or nothing to redo",
        [(EXIT_SCHEMA_FILE_NOT_WRITTEN, "migrations redone, schema file not written"), SOME_FAILED, POOLER],
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument("steps", nargs="?", type=int, metavar="N", help="How many migrations to redo.")
        self.add_wait_argument(parser)
        add_selection_arguments(parser)
        add_run_arguments(parser)
        parser.add_argument("--json", action="store_true", help="Print one JSON object per database and tenant.")

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome."""
        targets = fleet_targets(options, force=options["json"])
        if targets is not None:
            rewrite_schema_files(
                self, run_fleet_command(self, targets, Redo(options["steps"]), options), options["directory"], REDONE
            )
            return
        runner = self.runner(options, lock_wait_timeout=options["wait"], reporter=ProgressReporter(self))
        started = perf_counter()
        results = runner.redo(options["steps"])
        reapplied = [result for result in results if result.action == Action.APPLIED]
        print_summary(self, reapplied, "Redid", "Nothing to redo.", started)
        rewrite_schema_file(self, runner, reapplied, REDONE)

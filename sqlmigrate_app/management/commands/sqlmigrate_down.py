from __future__ import annotations

from argparse import ArgumentParser
from time import perf_counter
from typing import Any

from ..base import (
    EXIT_SCHEMA_FILE_NOT_WRITTEN,
    ProgressReporter,
    SqlMigrateCommand,
    exit_codes_line,
    print_plan,
    print_summary,
    rewrite_schema_file,
)

NOTHING_TO_ROLL_BACK = "Nothing to roll back."


class Command(SqlMigrateCommand):
    """``sqlmigrate_down [N]``: roll back the newest applied migrations."""

    help = "Roll back the last N applied SQL migrations (default 1), newest first."
    exit_codes_help = exit_codes_line(
        "rolled back, or nothing to roll back",
        [(EXIT_SCHEMA_FILE_NOT_WRITTEN, "migrations rolled back, schema file not written")],
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument("steps", nargs="?", type=int, metavar="N", help="How many migrations to roll back.")
        parser.add_argument(
            "--to", metavar="ID", help="Roll back every migration newer than this one (id, file name or timestamp)."
        )
        parser.add_argument("--all", action="store_true", dest="everything", help="Roll back every applied migration.")
        parser.add_argument("--plan", action="store_true", help="Show what would be rolled back; change nothing.")
        parser.add_argument("--sql", action="store_true", help="Print the SQL script that would run; change nothing.")
        self.add_wait_argument(parser)

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome."""
        runner = self.runner(options, lock_wait_timeout=options["wait"], reporter=ProgressReporter(self))
        which = {"steps": options["steps"], "to": options["to"], "everything": options["everything"]}
        if options["sql"]:
            self.stdout.write(runner.down_script(**which), ending="")
            return
        if options["plan"]:
            print_plan(self, "Planned rollbacks:", runner.plan_rollback(**which), NOTHING_TO_ROLL_BACK, down=True)
            return
        started = perf_counter()
        results = runner.rollback(**which)
        print_summary(self, results, "Rolled back", NOTHING_TO_ROLL_BACK, started)
        rewrite_schema_file(self, runner, results, "rolled back and removed from the history")

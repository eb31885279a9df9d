from __future__ import annotations

from argparse import ArgumentParser
from time import perf_counter
from typing import Any

from ...fleet import Down, plan_fleet
from ...runner import MigrationRunner
from ..base import (
    EXIT_SCHEMA_FILE_NOT_WRITTEN,
    POOLER,
    ProgressReporter,
    SqlMigrateCommand,
    exit_codes_line,
    print_plan,
    print_summary,
    rewrite_schema_file,
)
from ..fleet import (
    SOME_FAILED,
    add_run_arguments,
    add_selection_arguments,
    fleet_targets,
    one_script_target,
    print_fleet_plan,
    rewrite_schema_files,
    run_fleet_command,
)

NOTHING_TO_ROLL_BACK = "Nothing to roll back."
ROLLED_BACK = "rolled back and removed from the history"


class Command(SqlMigrateCommand):
    """``sqlmigrate_down [N]``: roll back the newest applied migrations, of one database or of a fleet."""

    help = (
        "Roll back the last N applied SQL migrations (default 1), newest first: of every tenant schema, then of "
        "the shared set, where a tenant set is configured."
    )
    several_databases = True
    exit_codes_help = exit_codes_line(
        "rolled back, or nothing to roll back",
        [(EXIT_SCHEMA_FILE_NOT_WRITTEN, "migrations rolled back, schema file not written"), SOME_FAILED, POOLER],
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
        add_selection_arguments(parser)
        add_run_arguments(parser)
        parser.add_argument("--json", action="store_true", help="Print one JSON object per database and tenant.")

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome."""
        which = {"steps": options["steps"], "to": options["to"], "everything": options["everything"]}
        targets = fleet_targets(options, force=options["json"])
        if targets is None:
            self.run_one(options, which)
            return
        operation = Down(**which)
        if options["sql"]:
            target = one_script_target(targets)
            directory = options["directory"] if target.schema is None else None
            runner = MigrationRunner(target.database, directory, schema=target.schema)
            self.stdout.write(runner.down_script(**which), ending="")
        elif options["plan"]:
            plans = plan_fleet(targets, operation, options["directory"])
            print_fleet_plan(self, plans, "Planned rollbacks:", "nothing to roll back")
        else:
            results = run_fleet_command(self, targets, operation, options)
            rewrite_schema_files(self, results, options["directory"], ROLLED_BACK)

    def run_one(self, options: dict[str, Any], which: dict[str, Any]) -> None:
        """One database's shared set, as before tenants."""
        runner = self.runner(options, lock_wait_timeout=options["wait"], reporter=ProgressReporter(self))
        if options["sql"]:
            self.stdout.write(runner.down_script(**which), ending="")
            return
        if options["plan"]:
            print_plan(self, "Planned rollbacks:", runner.plan_rollback(**which), NOTHING_TO_ROLL_BACK, down=True)
            return
        started = perf_counter()
        results = runner.rollback(**which)
        print_summary(self, results, "Rolled back", NOTHING_TO_ROLL_BACK, started)
        rewrite_schema_file(self, runner, results, ROLLED_BACK)

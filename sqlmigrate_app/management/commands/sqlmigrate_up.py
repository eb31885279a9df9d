from __future__ import annotations

from argparse import ArgumentParser
from time import perf_counter
from typing import Any

from ..base import ProgressReporter, SqlMigrateCommand, print_plan, print_summary

NOTHING_PENDING = "No pending migrations."


class Command(SqlMigrateCommand):
    """``sqlmigrate_up``: apply the pending migrations."""

    help = "Apply pending SQL migrations, each in its own transaction."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument("--to", metavar="ID", help="Stop after this migration.")
        parser.add_argument("--plan", action="store_true", help="Show what would run; change nothing.")
        parser.add_argument(
            "--fake", action="store_true", help="Record pending migrations as applied without running them."
        )
        parser.add_argument(
            "--allow-out-of-order",
            action="store_true",
            help="Apply pending migrations older than the newest applied one.",
        )
        parser.add_argument(
            "--lock-timeout", type=float, metavar="SECONDS", help="Give up waiting for another runner after this long."
        )

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome."""
        runner = self.runner(options, lock_wait_timeout=options["lock_timeout"], reporter=ProgressReporter(self))
        if options["plan"]:
            plan = runner.plan(to=options["to"], allow_out_of_order=options["allow_out_of_order"])
            print_plan(self, "Planned migrations:", plan, NOTHING_PENDING, down=False)
            return
        started = perf_counter()
        results = runner.migrate(
            to=options["to"], fake=options["fake"], allow_out_of_order=options["allow_out_of_order"]
        )
        print_summary(self, results, "Faked" if options["fake"] else "Applied", NOTHING_PENDING, started)

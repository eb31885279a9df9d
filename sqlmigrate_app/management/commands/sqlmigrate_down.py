from __future__ import annotations

from argparse import ArgumentParser
from time import perf_counter
from typing import Any

from ..base import ProgressReporter, SqlMigrateCommand, print_plan


class Command(SqlMigrateCommand):
    help = "Roll back the last N applied SQL migrations (default 1), newest first."

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("steps", nargs="?", type=int, metavar="N", help="How many migrations to roll back.")
        parser.add_argument("--to", metavar="ID", help="Roll back every migration newer than this one.")
        parser.add_argument("--plan", action="store_true", help="Show what would be rolled back; change nothing.")
        parser.add_argument(
            "--lock-timeout", type=float, metavar="SECONDS", help="Give up waiting for another runner after this long."
        )

    def run(self, **options: Any) -> None:
        runner = self.runner(options, lock_wait_timeout=options["lock_timeout"], reporter=ProgressReporter(self))
        if options["plan"]:
            print_plan(self, "Planned rollbacks:", runner.plan_rollback(options["steps"], options["to"]), down=True)
            return
        started = perf_counter()
        results = runner.rollback(options["steps"], options["to"])
        done = [result for result in results if result.action != "skipped"]
        if not done:
            self.say("Nothing to roll back.")
            return
        plural = "s" if len(done) != 1 else ""
        elapsed = (perf_counter() - started) * 1000
        self.say(self.style.SUCCESS(f"Rolled back {len(done)} migration{plural} in {elapsed:.0f} ms."))

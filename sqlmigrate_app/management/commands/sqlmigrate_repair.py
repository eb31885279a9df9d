from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from ...errors import plural, printable
from ..base import ProgressReporter, SqlMigrateCommand

PROMPT = "Only the history table changes, never the schema. Type 'yes' to continue, or 'no' to cancel: "


class Command(SqlMigrateCommand):
    """``sqlmigrate_repair [ID...]``: make the history agree with reviewed files."""

    help = (
        "Make the history agree with the files: record the current checksum of modified migrations and "
        "forget missing ones. Never touches the schema."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument(
            "ids", nargs="*", metavar="ID", help="Repair only these migrations (id, file name or 14-digit timestamp)."
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation (for scripts).",
        )
        self.add_wait_argument(parser)

    def run(self, **options: Any) -> None:
        """Show the plan, ask, repair, and say what changed."""
        runner = self.runner(options, lock_wait_timeout=options["wait"], reporter=ProgressReporter(self))
        plan = runner.plan_repair(options["ids"])
        if not plan:
            self.say("Nothing to repair.", level=0)
            return
        self.say(self.style.MIGRATE_HEADING(f"Repairs to the history of database {runner.using!r}:"), level=0)
        for repair in plan:
            self.say(f"  {printable(repair.summary)}", level=0)
        if options["interactive"] and not self.confirmed():
            return
        done = runner.repair(options["ids"], expected=plan)
        self.say(self.style.SUCCESS(f"Repaired {plural(len(done), 'history row')}."), level=0)

    def confirmed(self) -> bool:
        """Whether the user typed yes, as Django's ``flush`` asks; if not, say it was cancelled.
        The end of the input (``< /dev/null``, a script without ``--noinput``) is a no."""
        try:
            answer = input(PROMPT)
        except EOFError:
            self.say("\nRepair cancelled: no answer (end of input); --noinput repairs without asking.", level=0)
            return False
        if answer.strip().lower() != "yes":
            self.say("Repair cancelled.", level=0)
            return False
        return True

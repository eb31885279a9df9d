from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ...errors import plural, printable
from ...fleet import RepairHistory, plan_fleet
from ...planner import Repair
from ...tenants import Target
from ..base import EXIT_SOME_FAILED, ProgressReporter, SqlMigrateCommand, exit_codes_line
from ..fleet import SOME_FAILED, add_run_arguments, add_selection_arguments, fleet_targets, name, run_fleet_command

PROMPT = "Only the history table changes, never the schema. Type 'yes' to continue, or 'no' to cancel: "


class Command(SqlMigrateCommand):
    """``sqlmigrate_repair [ID...]``: make the history agree with reviewed files."""

    help = (
        "Make the history agree with the files: record the current checksum of modified migrations and "
        "forget missing ones. Never touches the schema."
    )
    several_databases = True
    exit_codes_help = exit_codes_line("repaired, nothing to repair, or cancelled", [SOME_FAILED])

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
        add_selection_arguments(parser)
        add_run_arguments(parser)

    def run(self, **options: Any) -> None:
        """Show the plan, ask, repair, and say what changed."""
        targets = fleet_targets(options)
        if targets is not None:
            self.run_fleet(targets, options)
            return
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

    def run_fleet(self, targets: list[Target], options: dict[str, Any]) -> None:
        """Each history's repairs (refusals on stderr), one question, then the repairs, each
        history's refused if it changed since (exit 13 when some failed)."""
        ids = tuple(options["ids"])
        plans = plan_fleet(targets, RepairHistory(ids), options["directory"])
        databases = len({target.database for target in targets})
        todo: dict[Target, list[Repair]] = {}
        for plan in plans:
            if plan.error is not None:
                self.stderr.write(f"{name(plan.target, databases)}: {printable(str(plan.error))}")
            elif plan.planned:
                todo[plan.target] = [repair for repair in plan.planned if isinstance(repair, Repair)]
                self.say(self.style.MIGRATE_HEADING(f"Repairs to the history of {name(plan.target, databases)}:"), 0)
                for repair in todo[plan.target]:
                    self.say(f"  {printable(repair.summary)}", level=0)
        if not todo:
            self.say("Nothing to repair.", level=0)
        elif not options["interactive"] or self.confirmed():
            run_fleet_command(self, list(todo), RepairHistory(ids, todo), options)
        refused = sum(1 for plan in plans if plan.error is not None)
        if refused:
            raise CommandError(f"{refused} of {len(plans)} refused", returncode=EXIT_SOME_FAILED)

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

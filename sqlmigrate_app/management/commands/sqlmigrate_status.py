from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ...runner import APPLIED, MISSING, MODIFIED, PENDING, MigrationStatus
from ..base import SqlMigrateCommand

MARKS = {APPLIED: "✅ Executed", PENDING: "⏳ Pending ", MODIFIED: "⚠️  Modified", MISSING: "❌ Missing "}


class Command(SqlMigrateCommand):
    help = "List every SQL migration with its state: applied, pending, modified or missing."

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--json", action="store_true", help="Print a JSON array instead of text.")
        parser.add_argument(
            "--check", action="store_true", help="Exit 1 if anything is pending, modified or missing (a deploy gate)."
        )

    def run(self, **options: Any) -> None:
        rows = self.runner(options).status()
        if options["json"]:
            self.stdout.write(json.dumps([row.as_dict() for row in rows], indent=2))
        else:
            self.print_table(rows)
        if options["check"]:
            problems = [row for row in rows if row.state != APPLIED]
            if problems:
                counts = ", ".join(
                    f"{sum(row.state == state for row in problems)} {state}"
                    for state in (PENDING, MODIFIED, MISSING)
                    if any(row.state == state for row in problems)
                )
                raise CommandError(f"migrations are not up to date: {counts}")

    def print_table(self, rows: list[MigrationStatus]) -> None:
        if not rows:
            self.say("No migrations found.")
            return
        styles = {
            APPLIED: self.style.SUCCESS,
            PENDING: self.style.WARNING,
            MODIFIED: self.style.ERROR,
            MISSING: self.style.ERROR,
        }
        for row in rows:
            when = f" | {row.executed_at:%Y-%m-%d %H:%M:%S}" if row.executed_at else ""
            self.say(f"{styles[row.state](MARKS[row.state])} | {row.id} | {row.name}{when}", level=0)

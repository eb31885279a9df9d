from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from ... import conf
from ...scaffold import create_migration_file
from ..base import SqlMigrateCommand


class Command(SqlMigrateCommand):
    """``sqlmigrate_create NAME``: write a new migration file."""

    help = "Create a new, empty SQL migration file named <UTC timestamp>_<name>.sql."
    database_help = "Only picks the directory (SQLMIGRATE_DIRS[alias]); no database is touched."

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument("name", help="What the migration does, e.g. add_user_preferences_table.")

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome."""
        using = conf.check_alias(options["database"])
        directory = Path(options["directory"]) if options["directory"] else conf.migrations_dir(using)
        path = create_migration_file(directory, options["name"])
        self.say(self.style.SUCCESS(f"Created {path}"), level=0)

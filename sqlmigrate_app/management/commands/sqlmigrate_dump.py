from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from ... import conf
from ...errors import SchemaFileError
from ...schema_file import differences, render, write
from ..base import EXIT_SCHEMA_FILE, EXIT_SCHEMA_FILE_NOT_WRITTEN, SqlMigrateCommand, exit_codes_line


class Command(SqlMigrateCommand):
    """``sqlmigrate_dump``: the schema and the applied migrations, written to the schema file."""

    help = (
        "Write the database schema and the applied migrations to SQLMIGRATE_SCHEMA_FILE (or --output), "
        "or with --check fail when that file differs from the database."
    )
    exit_codes_help = exit_codes_line(
        "written (--check: the file matches the database)",
        [
            (EXIT_SCHEMA_FILE, "--check: the file differs"),
            (EXIT_SCHEMA_FILE_NOT_WRITTEN, "the file cannot be written (--check: cannot be read)"),
        ],
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        """The command's own options, after the common ones."""
        super().add_arguments(parser)
        parser.add_argument(
            "--output", metavar="FILE", help="Where to write it (default: SQLMIGRATE_SCHEMA_FILE; - for stdout)."
        )
        parser.add_argument(
            "--check", action="store_true", help="Write nothing; exit 11 if the file differs from the database."
        )

    def run(self, **options: Any) -> None:
        """Do it, and print the outcome."""
        runner = self.runner(options)
        output = options["output"]
        # No file (- or no setting): standard output.
        path = None if output == "-" else Path(output) if output else conf.schema_file(runner.using)
        if options["check"] and path is None:
            raise CommandError("--check compares a file: set SQLMIGRATE_SCHEMA_FILE or give --output FILE")
        text = render(runner)
        if path is None:
            self.stdout.write(text, ending="")
            return
        try:
            self.to_file(path, text, options["check"])
        except SchemaFileError as exc:
            raise CommandError(str(exc), returncode=EXIT_SCHEMA_FILE_NOT_WRITTEN) from exc

    def to_file(self, path: Path, text: str, check: bool) -> None:
        """Write ``text`` to the file at ``path`` or, with ``check``, compare them."""
        if check:
            diff = differences(path, text)
            if diff:
                self.stderr.write("\n".join(diff))
                raise CommandError(
                    f"{path} differs from the database: run sqlmigrate_dump and commit it", returncode=EXIT_SCHEMA_FILE
                )
            self.say(self.style.SUCCESS(f"{path} matches the database."))
        elif write(path, text):
            self.say(self.style.SUCCESS(f"Wrote {path}."))
        else:
            self.say(f"{path} is up to date.")

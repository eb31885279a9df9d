"""A test's database and what it runs there: ``Target`` (made by the ``target`` fixture in
``conftest.py``), the result of a command run in-process, and Django aliases registered for a URL."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

ROOT = Path(__file__).resolve().parent.parent.parent
ALIAS = "target"


@dataclass
class CommandResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class Target:
    """A fresh database registered as the Django alias ``target``, and a migrations directory."""

    vendor: str
    url: str
    directory: Path
    alias: str = ALIAS
    env: dict[str, str] = field(default_factory=dict)

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.directory / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def migration(self, migration_id: str, up: str, down: str = "", header: str = "") -> Path:
        return self.write(f"{migration_id}.sql", f"{header}-- UP\n{up}\n-- DOWN\n{down}\n")

    def call(self, command: str, *args: str, **options: Any) -> CommandResult:
        """Run a command in-process, as ``manage.py`` would; CommandError becomes its exit code."""
        out, err = io.StringIO(), io.StringIO()
        options.setdefault("database", self.alias)
        if command != "sqlmigrate_create" or "directory" not in options:
            options.setdefault("directory", str(self.directory))
        try:
            call_command(command, *args, stdout=out, stderr=err, no_color=True, **options)
        except CommandError as exc:
            return CommandResult(exc.returncode, out.getvalue(), err.getvalue() + str(exc))
        return CommandResult(0, out.getvalue(), err.getvalue())

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``python manage.py ...`` in a real process against this database."""
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args, "--dir", str(self.directory)],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": self.url, "DJANGO_SETTINGS_MODULE": "project.settings", **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def tables(self) -> set[str]:
        with connections[self.alias].cursor() as cursor:
            return set(connections[self.alias].introspection.table_names(cursor))

    def history(self) -> list[str]:
        return [row[0] for row in self.query("SELECT id FROM schema_migrations ORDER BY id")]


def register_alias(alias: str, url: str) -> None:
    config = dj_database_url.parse(url)
    full = connections.configure_settings({"default": {"ENGINE": "django.db.backends.dummy"}, alias: config})
    connections.settings[alias] = full[alias]


def unregister_alias(alias: str) -> None:
    connections[alias].close()
    del connections[alias]
    del connections.settings[alias]


def ok(result: CommandResult) -> CommandResult:
    """The result of a command that must have succeeded (else its output is the failure)."""
    assert result.code == 0, result.text
    return result

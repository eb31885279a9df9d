"""A throwaway database like a configured one, for ``sqlmigrate_verify``: never the target.

On PostgreSQL it is created and dropped the way Django creates test databases: through a
connection to the ``postgres`` database, named after ``DATABASES[alias]["TEST"]["NAME"]`` (or
``test_`` + ``NAME``) with a suffix of its own, so a test suite running at the same time keeps
its database, with ``TEST``'s ``TEMPLATE``, ``CHARSET`` and ``COLLATION``. On SQLite it is a
file in a temporary directory. Either way it is registered as a Django alias while it exists.
"""

from __future__ import annotations

import copy
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.db import DatabaseError, connections

from .errors import ThrowawayDatabaseError
from .executor import describe

# PostgreSQL's limit on identifiers, in bytes.
MAX_NAME = 63
INSUFFICIENT_PRIVILEGE = "42501"


@dataclass(frozen=True, slots=True)
class Throwaway:
    """A throwaway database: the Django alias to reach it, and its name (a file's path on SQLite)."""

    alias: str
    name: str


def throwaway_name(base: str, token: str) -> str:
    """``<base>_verify_<token>``, ``base`` cut so the whole fits PostgreSQL's 63 bytes."""
    suffix = f"_verify_{token}"
    cut = base.encode()[: MAX_NAME - len(suffix)].decode(errors="ignore")
    return cut + suffix


@contextmanager
def throwaway_database(using: str, keep: bool = False) -> Iterator[Throwaway]:
    """A new, empty database on ``using``'s server, dropped afterwards unless ``keep``."""
    vendor = connections[using].vendor
    if vendor not in ("postgresql", "sqlite"):
        raise ThrowawayDatabaseError(f"database {using!r}: verify works on PostgreSQL and SQLite, not {vendor}")
    settings = copy.deepcopy(connections.settings[using])
    alias = f"{using}__sqlmigrate_throwaway_{secrets.token_hex(3)}"
    if vendor == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix="sqlmigrate-verify-"))
        settings["NAME"] = str(directory / "verify.sqlite3")
    else:
        base = settings.get("TEST", {}).get("NAME") or f"test_{settings['NAME']}"
        settings["NAME"] = throwaway_name(base, secrets.token_hex(3))
        _create(using, settings["NAME"])
    connections.settings[alias] = settings
    try:
        yield Throwaway(alias, settings["NAME"])
    finally:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]
        if not keep:
            if vendor == "sqlite":
                shutil.rmtree(directory, ignore_errors=True)
            else:
                _drop(using, settings["NAME"])


def _create(using: str, name: str) -> None:
    """``CREATE DATABASE`` with the options of ``TEST``, as Django's test runner does it."""
    connection = connections[using]
    quoted = connection.ops.quote_name(name)
    try:
        with connection._nodb_cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {quoted}{connection.creation.sql_table_creation_suffix()}")
    except DatabaseError as exc:
        cause = exc.__cause__ or exc
        user = connection.settings_dict.get("USER") or "the connecting role"
        if getattr(cause, "sqlstate", None) == INSUFFICIENT_PRIVILEGE:
            raise ThrowawayDatabaseError(
                f"database {using!r}: role {user} may not create the throwaway database {name} that verify works in "
                f"({describe(cause)}); grant it CREATEDB (ALTER ROLE ... CREATEDB), or run verify against a server "
                "where it may (in CI, the one the tests use)"
            ) from exc
        raise ThrowawayDatabaseError(
            f"database {using!r}: cannot create the throwaway database {name}: {describe(cause)}"
        ) from exc


def _drop(using: str, name: str) -> None:
    """``DROP DATABASE``, forcing out any session a migration left connected (``dblink``)."""
    connection = connections[using]
    quoted = connection.ops.quote_name(name)
    try:
        with connection._nodb_cursor() as cursor:
            cursor.execute("SELECT current_setting('server_version_num')::int")
            force = " WITH (FORCE)" if cursor.fetchone()[0] >= 130000 else ""
            cursor.execute(f"DROP DATABASE IF EXISTS {quoted}{force}")
    except DatabaseError as exc:
        raise ThrowawayDatabaseError(
            f"database {using!r}: could not drop the throwaway database {name}: {describe(exc.__cause__ or exc)}; "
            "drop it by hand"
        ) from exc

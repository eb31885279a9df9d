"""The schema file: what the migrations produce, for review (dbmate's ``schema.sql`` habit).

The snapshot ``verify`` compares (:mod:`.snapshot`), then the ids of the applied migrations in
order, the repeatable ones last, each with the checksum it last ran with. ``sqlmigrate_dump``
writes it; ``up``, ``down`` and ``redo`` rewrite it after a successful run when
``SQLMIGRATE_SCHEMA_FILE`` is set, so every pull request that adds a migration shows its effect
on the schema; ``sqlmigrate_dump --check`` fails in CI when it was not rewritten. Written
atomically (a temporary file beside it, renamed over it); a file that cannot be written or read
is a one-line :class:`~.errors.SchemaFileError`, never a traceback after migrations committed.
"""

from __future__ import annotations

import difflib
import errno
import os
import secrets
import stat
from pathlib import Path

from django.core.management import call_command

from . import conf, snapshot
from .directory import load_directory
from .errors import SchemaFileError, SqlMigrateError, database_errors
from .runner import MigrationRunner
from .selection import tenant_set_dir
from .snapshot import schemas
from .throwaway import throwaway_database

HEADER = (
    "-- The database schema as the migrations leave it, then the migrations applied, in order.\n"
    "-- Written by sqlmigrate_dump (and by sqlmigrate_up and sqlmigrate_down when SQLMIGRATE_SCHEMA_FILE\n"
    "-- is set): do not edit it, review it.\n\n"
)
APPLIED_HEADING = "-- Applied migrations\n"
TENANT_HEADER = (
    "-- The schema every tenant gets from the tenant set, in a schema named tenant here, then its migrations, in\n"
    "-- order. Written by sqlmigrate_dump from a rebuild in a throwaway database: do not edit it, review it.\n\n"
)
# The schema of the throwaway database the tenant set is applied in, as its file names it.
TENANT_SCHEMA = "tenant"


def render(runner: MigrationRunner) -> str:
    """The schema file's text for ``runner``'s database, as it is now."""
    schema = snapshot.take(runner.connection, runner.history.table)
    if conf.tenant_dir(runner.using) is not None:  # the tenants' schemas are the tenant set's file
        schema = schemas.shared_part(schema, runner.history.table)
    with database_errors(runner.connection):
        applied = runner.history.read()
    # A repeatable migration with the checksum it last ran with: a pull request that edits one shows it here.
    repeatables = "".join(f"{row.id} {row.checksum[:12]}\n" for row in applied.repeatables.values())
    return (
        HEADER
        + schema.text()
        + APPLIED_HEADING
        + "".join(f"{migration_id}\n" for migration_id in applied)
        + repeatables
    )


def render_tenant_set(using: str, shared_directory: str | Path | None = None) -> str:
    """The tenant set's schema file for ``using``, whatever the number of tenants: every
    migration of the tenant set applied once, in the schema :data:`TENANT_SCHEMA` of a
    throwaway database, after every migration of the shared set (``shared_directory``'s, as a
    tenant sees it); that schema's objects, then the tenant set's ids. What the files produce,
    not what a tenant holds (``sqlmigrate_drift --tenants`` compares the tenants)."""
    shared = load_directory(Path(shared_directory) if shared_directory else conf.migrations_dir(using))
    tenant_set = load_directory(tenant_set_dir(using))
    shared.raise_first_error()
    tenant_set.raise_first_error()
    with throwaway_database(using) as scratch:
        base = MigrationRunner(scratch.alias, shared.directory, loader=lambda _: shared)
        if any(migration.requires for migration in [*shared.migrations, *tenant_set.migrations]):
            call_command("migrate", database=scratch.alias, interactive=False, verbosity=0, skip_checks=True)
        base.migrate()
        tenant = MigrationRunner(scratch.alias, tenant_set.directory, loader=lambda _: tenant_set, schema=TENANT_SCHEMA)
        tenant.create_schema()
        tenant.migrate()
        _, parts = schemas.split(snapshot.take(base.connection, base.history.table), [TENANT_SCHEMA])
    objects = snapshot.Snapshot(schemas.without(parts[TENANT_SCHEMA], TENANT_SCHEMA, base.history.table))
    ids = "".join(f"{migration.id}\n" for migration in tenant_set.migrations)
    return TENANT_HEADER + objects.text() + APPLIED_HEADING + ids


def tenant_set_file(path: Path) -> Path:
    """Where the tenant set's schema file goes beside the shared set's: ``schema.sql`` gives
    ``schema.tenant.sql``."""
    return path.with_name(f"{path.stem}.tenant{path.suffix}")


def not_written(path: Path, reason: str) -> SchemaFileError:
    """The error of a schema file that could not be written, and why."""
    return SchemaFileError(f"the schema file {path} was not written: {reason}")


def write(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it holds it already; whether it changed.

    Atomically (:func:`replace`): an interrupted or failed write leaves the old file whole. A
    symbolic link is written through, and stays a link."""
    real = Path(os.path.realpath(path))
    problem = not_a_file(real)
    if problem:
        raise not_written(path, problem)
    data = text.encode("utf-8")
    if holds(real, data):
        return False
    try:
        descriptor, temporary = create_beside(real)
    except OSError as exc:
        raise not_written(path, f"cannot create a file in {real.parent}: {exc.strerror or exc}") from exc
    try:
        replace(real, descriptor, temporary, data)
    except OSError as exc:
        raise not_written(path, exc.strerror or str(exc)) from exc
    return True


def not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be the schema file although it exists (a directory, a device, a
    FIFO), or None. Renaming over ``/dev/null`` would replace the device; reading a FIFO would
    wait for a writer."""
    try:
        mode = path.stat().st_mode
    except OSError:  # missing, or under a file: creating the file says why
        return None
    if stat.S_ISDIR(mode):
        return os.strerror(errno.EISDIR)  # "Is a directory", as open() says it
    return None if stat.S_ISREG(mode) else "not a regular file"


def holds(path: Path, data: bytes) -> bool:
    """Whether the file at ``path`` holds exactly ``data``. Bytes, not text: a file that is not
    UTF-8 is simply different, and gets overwritten."""
    try:
        return path.read_bytes() == data
    except OSError:  # missing or unreadable: writing it says why, if it cannot be written
        return False


def create_beside(path: Path) -> tuple[int, Path]:
    """A new, empty temporary file in ``path``'s directory (made if missing), open for
    writing: the same file system, so renaming it over ``path`` is atomic. Created with mode
    0666 less the umask, as ``open()`` would create ``path`` itself."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        return os.open(temporary, flags, 0o666), temporary
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(temporary, flags, 0o666), temporary


def replace(path: Path, descriptor: int, temporary: Path, data: bytes) -> None:
    """Fill the ``temporary`` file open as ``descriptor`` with ``data``, flush it to disk, and
    rename it over ``path`` (keeping the old file's permission bits); on any failure, remove it."""
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if path.exists():
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def read(path: Path) -> str:
    """The schema file's text, empty when there is none; one that cannot be read (a directory,
    no permission, not UTF-8) is a :class:`SchemaFileError` naming it and the reason."""
    problem = not_a_file(path)
    if problem:
        raise not_read(path, problem)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise not_read(path, exc.strerror or str(exc)) from exc
    try:
        return data.decode("utf-8").replace("\r\n", "\n")  # a CRLF checkout still matches
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        reason = f"line {line} is not UTF-8 (byte 0x{data[exc.start]:02x}); sqlmigrate_dump writes it again"
        raise not_read(path, reason) from exc


def not_read(path: Path, reason: str) -> SchemaFileError:
    """The error of a schema file that could not be read, and why."""
    return SchemaFileError(f"the schema file {path} cannot be read: {reason}")


def differences(path: Path, text: str) -> list[str]:
    """How the file at ``path`` differs from ``text`` (a unified diff; empty when it does not)."""
    current = read(path)
    if current == text:
        return []
    return list(
        difflib.unified_diff(current.splitlines(), text.splitlines(), f"{path}", "the database", n=2, lineterm="")
    )


def rewrite(runner: MigrationRunner) -> Path | None:
    """After a successful ``up``, ``down`` or ``redo``: rewrite ``SQLMIGRATE_SCHEMA_FILE`` when it
    is set (and differs); the path written, or None. Any failure, the database's while reading
    the schema included, is a :class:`SchemaFileError`: the migrations have committed by then."""
    path = conf.schema_file(runner.using)
    if path is None:
        return None
    try:
        text = render(runner)
    except SqlMigrateError as exc:
        raise not_written(path, str(exc)) from exc
    return path if write(path, text) else None

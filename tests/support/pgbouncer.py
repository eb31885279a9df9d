"""A real PgBouncer (Debian's ``pgbouncer`` package) in front of the tests' PostgreSQL, in one
pooling mode, listening on loopback; as root it runs as the ``postgres`` user (it refuses root),
its configuration, user list and log in a directory that user owns."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from .postgres_server import _as_server_user, _free_port

CANDIDATES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
# Server connections per database and user: fewer than the runners, so they share them.
POOL_SIZE = 4


def find_pgbouncer() -> str | None:
    """The pgbouncer binary, from PATH or where Debian puts it (``/usr/sbin``)."""
    found = shutil.which("pgbouncer")
    return found or next((path for path in CANDIDATES if os.access(path, os.X_OK)), None)


def _config(server: str, mode: str, port: int, root: Path) -> str:
    parts = urlsplit(server)
    return f"""[databases]
* = host={parts.hostname} port={parts.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root / "userlist.txt"}
admin_users = {parts.username}
pool_mode = {mode}
max_client_conn = 200
default_pool_size = {POOL_SIZE}
ignore_startup_parameters = extra_float_digits
logfile = {root / "pgbouncer.log"}
pidfile = {root / "pgbouncer.pid"}
"""


@contextlib.contextmanager
def pgbouncer(binary: str, server: str, mode: str) -> Iterator[str]:
    """PgBouncer in ``mode`` (``session``, ``transaction``, ``statement``) in front of the server
    of ``server`` (a URL); yield its URL (the same user and database). A pool of a few server
    connections per database and user (:data:`POOL_SIZE`), so concurrent runners share them."""
    root = Path(tempfile.mkdtemp(prefix=f"sqlmigrate-pgbouncer-{mode}-"))
    port = _free_port()
    user = urlsplit(server).username or "postgres"
    (root / "userlist.txt").write_text(f'"{user}" ""\n')
    (root / "pgbouncer.ini").write_text(_config(server, mode, port, root))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (root, *root.iterdir()):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    process = subprocess.Popen(
        _as_server_user([binary, str(root / "pgbouncer.ini")]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = server.replace(f":{urlsplit(server).port}/", f":{port}/", 1)
    try:
        _wait_until_accepting(url, process, root / "pgbouncer.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_accepting(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"pgbouncer exited early: {text[-2000:]}")
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

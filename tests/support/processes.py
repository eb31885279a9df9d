"""Real ``manage.py`` processes against a test database, started without waiting for them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from .target import ROOT, Target


def spawn(target: Target, *args: str) -> subprocess.Popen[str]:
    """Start ``python manage.py ARGS --dir DIR`` against ``target``; read it with ``communicate()``."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args, "--dir", str(target.directory)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": target.url, "DJANGO_SETTINGS_MODULE": "project.settings", **target.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Output:
    """Collects a stream in a thread, so a test can wait for some text without blocking."""

    def __init__(self, stream) -> None:
        self.chunks: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        while chunk := stream.read(1):
            self.chunks.append(chunk)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        wait_until(lambda: text in "".join(self.chunks), timeout, repr(text))

    @property
    def text(self) -> str:
        self.thread.join(timeout=30)
        return "".join(self.chunks)

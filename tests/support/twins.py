"""A second empty database beside a test's ``target``, of the same kind, registered as an alias:
to build the same migrations twice and compare."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from .target import Target, register_alias, unregister_alias


@contextmanager
def twin(target: Target, alias: str = "twin") -> Iterator[Target]:
    """An empty database like ``target``'s (another file, or another database on the server)."""
    if target.vendor == "sqlite":
        path = target.url.removeprefix("sqlite:///")
        url, name = f"sqlite:///{path}.twin", None
    else:
        server, name = target.url.rsplit("/", 1)
        name = f"{name}_twin"
        url = f"{server}/{name}"
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
    register_alias(alias, url)
    try:
        yield Target(target.vendor, url, target.directory, alias=alias)
    finally:
        unregister_alias(alias)
        if name:
            with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

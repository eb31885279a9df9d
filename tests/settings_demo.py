"""The demo project's settings, plus knobs the subprocess tests of test-database setup need.

``SQLMIGRATE_TEST_DIR`` points the project at another migrations directory and
``DJANGO_TEST_DATABASE_NAME`` gives the test database a name (a file for SQLite, so that
``--keepdb`` / ``--reuse-db`` have something to keep). ``SQLMIGRATE_TEST_SCHEMA_FILE`` sets
``SQLMIGRATE_SCHEMA_FILE``.
"""

import os
from pathlib import Path

from project.settings import *  # noqa: F403
from project.settings import DATABASES

if os.environ.get("SQLMIGRATE_TEST_DIR"):
    SQLMIGRATE_DIR = Path(os.environ["SQLMIGRATE_TEST_DIR"])
if os.environ.get("DJANGO_TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["DJANGO_TEST_DATABASE_NAME"]}
if os.environ.get("SQLMIGRATE_TEST_SCHEMA_FILE"):
    SQLMIGRATE_SCHEMA_FILE = Path(os.environ["SQLMIGRATE_TEST_SCHEMA_FILE"])

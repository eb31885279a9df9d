"""Test settings: the demo project, with an in-memory SQLite default for Django's own tables.

The databases that sqlmigrate works on in a test are made per test by ``conftest.py``.
"""

from project.settings import *  # noqa: F403

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

"""Settings of the real ``manage.py`` processes of the fleet tests: the demo project's, with a
tenant set (its directory from the environment) and the tenants listed by ``tests.support.fleet``."""

import os

from project.settings import *  # noqa: F403

SQLMIGRATE_TENANT_DIR = os.environ["SQLMIGRATE_TEST_TENANT_DIR"]
SQLMIGRATE_TENANTS = "tests.support.fleet.tenant_schemas"

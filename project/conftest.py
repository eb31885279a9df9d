# pytest-django: give the test databases the SQL migrations of migrations_sql/ (see docs/testing.md).
from sqlmigrate_app.testing import django_db_setup  # noqa: F401

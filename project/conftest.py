# pytest-django: give the test databases the SQL migrations of migrations_sql/ (see the README).
from sqlmigrate_app.testing import django_db_setup  # noqa: F401

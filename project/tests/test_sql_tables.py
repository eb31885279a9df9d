"""A project test that uses a table made by migrations_sql/, not by a Django model.

Runs under ``python manage.py test project`` and under ``pytest project`` alike.
"""

from django.db import connection
from django.test import TestCase

from sqlmigrate_app.conf import migrations_dir


class ClientRegistrationsTableTests(TestCase):
    def test_insert_and_read_back(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO client_registrations (id, name, contact_email) VALUES (%s, %s, %s)",
                ["c-1", "Acme", "ops@acme.test"],
            )
            cursor.execute("SELECT name, contact_email FROM client_registrations WHERE id = %s", ["c-1"])
            self.assertEqual(cursor.fetchall(), [("Acme", "ops@acme.test")])


class HistoryTableTests(TestCase):
    def test_every_sql_migration_is_recorded(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM schema_migrations")
            self.assertEqual(cursor.fetchone(), (len(list(migrations_dir().glob("*.sql"))),))

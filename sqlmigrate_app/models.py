"""An unmanaged model, never queried: it only gives the admin page a place and a permission.

Django makes no table for it (``managed = False``); its one permission,
``sqlmigrate_app.view_sqlmigration``, decides who may see the page. The page's data comes from
:meth:`MigrationRunner.status_table` and :meth:`~MigrationRunner.status_of`, never from this
model.
"""

from django.db import models


class SqlMigration(models.Model):
    """The admin page's model: a URL and a ``view`` permission, no table."""

    id = models.CharField(primary_key=True, max_length=255)

    class Meta:
        """Unmanaged, view-only."""

        managed = False
        default_permissions = ("view",)
        verbose_name = "SQL migration"
        verbose_name_plural = "SQL migrations"

    def __str__(self) -> str:
        return self.id

from django.apps import AppConfig


class SqlMigrateConfig(AppConfig):
    """The Django app: its system checks and its admin page."""

    name = "sqlmigrate_app"
    verbose_name = "SQL migrations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks."""
        # Registers the system checks; nothing here touches a database or applies migrations.
        from . import checks  # noqa: F401

from django.apps import AppConfig


class SqlMigrateConfig(AppConfig):
    name = "sqlmigrate_app"
    verbose_name = "SQL migrations"
    default_auto_field = "django.db.models.BigAutoField"

"""No table: the model is unmanaged. This migration only lets Django make its view permission."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="SqlMigration",
            fields=[
                ("id", models.CharField(max_length=255, primary_key=True, serialize=False)),
            ],
            options={
                "verbose_name": "SQL migration",
                "verbose_name_plural": "SQL migrations",
                "managed": False,
                "default_permissions": ("view",),
            },
        ),
    ]

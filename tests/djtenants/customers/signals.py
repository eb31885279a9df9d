"""The receiver of docs/tenants.md ("A new tenant"): a tenant created through the model gets the
tenant set once django-tenants has created and synced its schema."""

from django.dispatch import receiver
from django_tenants.signals import post_schema_sync
from django_tenants.utils import get_public_schema_name, get_tenant_database_alias

from sqlmigrate_app.fleet import migrate_tenant


@receiver(post_schema_sync)
def migrate_new_tenant(sender, tenant, **kwargs):
    if tenant.schema_name != get_public_schema_name():  # the public tenant's schema holds the shared set
        migrate_tenant(tenant.schema_name, using=get_tenant_database_alias())

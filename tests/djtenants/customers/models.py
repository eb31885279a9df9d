"""The tenant model and its domains, as django-tenants' documentation writes them."""

from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Client(TenantMixin):  # type: ignore[misc]  # django-tenants has no types
    name = models.CharField(max_length=100)

    auto_create_schema = True


class Domain(DomainMixin):  # type: ignore[misc]
    pass

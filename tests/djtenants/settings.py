"""Settings of a django-tenants project as its documentation sets one up, with sqlmigrate beside
it: the database from ``DATABASE_URL`` through django-tenants' backend, the shared set's and the
tenant set's directories from the environment (a test's temporary directories)."""

import os

import dj_database_url

SECRET_KEY = "djtenants-tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], engine="django_tenants.postgresql_backend")}
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]

SHARED_APPS = [
    "django_tenants",
    "tests.djtenants.customers",
    "django.contrib.contenttypes",
    "sqlmigrate_app",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "customers.Client"
TENANT_DOMAIN_MODEL = "customers.Domain"

# sqlmigrate: the shared set in the public schema, the tenant set in every tenant's schema.
SQLMIGRATE_DIR = os.environ["SQLMIGRATE_TEST_DIR"]
SQLMIGRATE_TENANT_DIR = os.environ["SQLMIGRATE_TEST_TENANT_DIR"]
SQLMIGRATE_TENANTS = "sqlmigrate_app.tenants.django_tenants_schemas"

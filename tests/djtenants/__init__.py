"""A django-tenants project for the tests: the real package's tenant model, connection wrapper,
router and ``migrate_schemas``, with sqlmigrate's shared and tenant sets (``tests/test_tenants_django_tenants.py``)."""

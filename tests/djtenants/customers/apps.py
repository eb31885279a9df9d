from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "tests.djtenants.customers"
    label = "customers"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the receiver)

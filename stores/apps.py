from django.apps import AppConfig


class StoresConfig(AppConfig):
    name = "stores"
    verbose_name = "Stores and shoppers"

    def ready(self) -> None:
        from stores import schema  # noqa: F401 - registers the OpenAPI auth extension

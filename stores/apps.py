from django.apps import AppConfig


class StoresConfig(AppConfig):
    name = "stores"
    verbose_name = "Stores and shoppers"

    def ready(self) -> None:
        # Registers the OpenAPI auth extension; it reaches the models, so not before ready().
        from stores import schema  # noqa: F401, PLC0415

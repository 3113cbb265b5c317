from django.apps import AppConfig


class EngineConfig(AppConfig):
    """Makes config an app only so its system checks are registered at start-up."""

    name = "config"
    label = "engine_config"

    def ready(self) -> None:
        # Importing the module registers its checks with Django.
        from config import checks  # noqa: F401, PLC0415

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class EngineConfig(AppConfig):
    """Makes config an app only so its system checks are registered at start-up."""

    name = "config"
    label = "engine_config"

    def ready(self) -> None:
        # Importing the module registers its checks with Django.
        from config import checks  # noqa: F401, PLC0415 (the checks reach settings: not before ready())


class EngineAdminConfig(AdminConfig):
    """django.contrib.admin, with the marketer's dashboard as its index page
    (tracking.admin_dashboard)."""

    default_site = "tracking.admin_dashboard.DashboardAdminSite"

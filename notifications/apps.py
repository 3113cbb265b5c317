from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        # Imported once the apps are loaded: they reach the models.
        from anymail.signals import tracking  # noqa: PLC0415

        from notifications import checks  # noqa: F401, PLC0415 (registers the system checks)
        from notifications.email_events import on_tracking  # noqa: PLC0415

        # anymail's documented way to receive every ESP's normalized webhook events.
        tracking.connect(on_tracking, dispatch_uid="notifications.email_tracking")

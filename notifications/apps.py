from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        from anymail.signals import tracking

        from notifications import checks  # noqa: F401  (registers the system checks)
        from notifications.email_events import on_tracking

        # anymail's documented way to receive every ESP's normalized webhook events.
        tracking.connect(on_tracking, dispatch_uid="notifications.email_tracking")

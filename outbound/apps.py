from django.apps import AppConfig


class OutboundConfig(AppConfig):
    name = "outbound"
    verbose_name = "Outbound webhooks"

    def ready(self) -> None:
        # The dispatcher enqueues the send task by name; every process that runs it must
        # have it registered (in-process in the embedded mode and the tests).
        from outbound import tasks  # noqa: F401, PLC0415

from django.apps import AppConfig


class InterventionsConfig(AppConfig):
    name = "interventions"

    def ready(self) -> None:
        # Actions enqueue tasks by name (they do not import the tasks that call them), so
        # every process that enqueues must have them registered, not only the workers
        # Celery's autodiscovery reaches. Models are loaded only once apps are ready.
        from interventions import tasks  # noqa: F401, PLC0415

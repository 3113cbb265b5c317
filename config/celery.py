"""The Celery app. Queues are declared here so every worker and producer agrees on them."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("intervention_engine")
app.config_from_object("django.conf:settings", namespace="CELERY")

# Separate queues so a slow provider cannot hold up the scheduler or another channel.
# "campaigns" runs scheduled campaign sends, which are long, away from the due-time release;
# "decisioning" decides events accepted in bulk, chunk by chunk (docs/decisions.md).
TASK_QUEUES = (
    "email",
    "sms",
    "push",
    "websocket",
    "scheduled",
    "retries",
    "campaigns",
    "webhooks",
    "decisioning",
)
app.conf.task_queues = [Queue(name) for name in TASK_QUEUES]
app.autodiscover_tasks()

# Carry the request id of the request that enqueued a task into the task's log lines.
from django_structlog.celery.steps import DjangoStructLogInitStep  # noqa: E402

app.steps["worker"].add(DjangoStructLogInitStep)

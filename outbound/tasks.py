"""Celery tasks for outbound webhooks: each takes ids and calls one action
(docs/webhooks.md). Acknowledged late: a worker killed mid-post leaves the delivery
pending, and the next pass sends it again with the same webhook-id."""

from typing import Any

from celery import shared_task
from django.conf import settings

from outbound import actions


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def dispatch_outbox() -> int:
    return actions.do_dispatch_outbox()


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.WEBHOOK_LEASE_SECONDS + 10,
    soft_time_limit=settings.WEBHOOK_LEASE_SECONDS,
)
def deliver_webhooks(endpoint_id: str) -> dict[str, Any]:
    return actions.do_deliver_endpoint(endpoint_id)


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def prune_webhooks() -> dict[str, int]:
    return actions.do_prune_webhooks()

"""Subscriber endpoints and the delivery of outbox events to them (docs/webhooks.md).

- ``do_dispatch_outbox`` (beat, every WEBHOOK_DISPATCH_INTERVAL_SECONDS): one dispatcher
  at a time fans new outbox events out to one delivery per matching enabled endpoint, then
  enqueues a send task for each endpoint with work due.
- ``do_deliver_endpoint`` (that task): holds the endpoint's lease and sends its pending
  deliveries one by one in event order; the first failure stops the pass and backs the
  endpoint off, so event k+1 never leaves before event k was accepted. After
  WEBHOOK_DISABLE_AFTER_FAILURES consecutive failures the endpoint is disabled.
- ``do_replay``: sends chosen events again, with their original webhook-id.
- ``do_prune_webhooks``: delivered rows and fully delivered events past retention.
"""

import base64
import secrets
from datetime import datetime, timedelta
from typing import Any

import structlog
from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone
from prometheus_client import Counter, Histogram

from interventions.models import Status
from outbound.models import DeliveryStatus, OutboxEvent, WebhookDelivery, WebhookEndpoint
from outbound.sender import post
from outbound.targets import TargetRefused, check_target
from stores.models import Store
from tracking.models import TrackingKind

logger = structlog.get_logger(__name__)

WEBHOOK_ATTEMPTS = Counter(
    "engine_webhook_attempts_total", "Webhook posts to subscriber endpoints", ["outcome"]
)
WEBHOOK_SECONDS = Histogram("engine_webhook_seconds", "Time of one webhook post")
WEBHOOK_ENDPOINTS_DISABLED = Counter(
    "engine_webhook_endpoints_disabled_total", "Endpoints disabled after consecutive failures"
)
WEBHOOK_ENQUEUE_FAILURES = Counter(
    "engine_webhook_enqueue_failures_total", "Send tasks that could not be enqueued"
)
OUTBOX_DISPATCHED = Counter("engine_outbox_events_dispatched_total", "Outbox events fanned out")

EVENT_TYPES = sorted(
    [f"intervention.{status}" for status in Status.values]
    + [f"tracking.{kind}" for kind in TrackingKind.values]
    + ["conversion.recorded"]
)
# Any number: only one dispatcher fans out at a time (ids must be handed out in order).
DISPATCH_LOCK = 0x0B0C5


class EndpointInvalid(Exception):
    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def check_event_types(event_types: Any) -> list[str]:
    if not isinstance(event_types, list) or not all(isinstance(t, str) for t in event_types):
        raise EndpointInvalid("event_types", "A list of event type names.")
    prefixes = {t.split(".")[0] + ".*" for t in EVENT_TYPES}
    unknown = [t for t in event_types if t not in EVENT_TYPES and t not in prefixes]
    if unknown:
        raise EndpointInvalid(
            "event_types", f"Unknown event types {unknown}; known: {EVENT_TYPES} or a prefix.*"
        )
    return list(dict.fromkeys(event_types))


def check_url(url: str) -> str:
    try:
        check_target(url)
    except TargetRefused as error:
        raise EndpointInvalid("url", str(error)) from error
    return url


def do_create_endpoint(
    store: Store, url: str, description: str = "", event_types: list[str] | None = None
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.create(
        store=store,
        url=check_url(url),
        description=description,
        event_types=check_event_types(event_types or []),
        secret=new_secret(),
    )
    logger.info("webhook_endpoint_created", store_id=str(store.pk), endpoint_id=str(endpoint.pk))
    return endpoint


def do_update_endpoint(endpoint: WebhookEndpoint, changes: dict[str, Any]) -> WebhookEndpoint:
    """URL, description, event types, enabled. Re-enabling clears the failure state, and
    what was pending goes out again in order."""
    if "url" in changes:
        endpoint.url = check_url(changes["url"])
    if "description" in changes:
        endpoint.description = changes["description"]
    if "event_types" in changes:
        endpoint.event_types = check_event_types(changes["event_types"])
    if "enabled" in changes and bool(changes["enabled"]) != endpoint.enabled:
        endpoint.enabled = bool(changes["enabled"])
        endpoint.disabled_reason = "" if endpoint.enabled else "disabled by a user"
        if endpoint.enabled:
            endpoint.consecutive_failures = 0
            endpoint.next_attempt_at = None
    endpoint.save()
    return endpoint


def do_dispatch_outbox(batch: int | None = None) -> int:
    """Fan out what was written since the last run, then wake the endpoints with work.
    Returns the number of events fanned out."""
    batch = batch or settings.WEBHOOK_DISPATCH_BATCH
    with transaction.atomic():
        if not dispatch_lock():
            return 0
        events = list(OutboxEvent.objects.filter(dispatched_at__isnull=True).order_by("id")[:batch])
        if events:
            endpoints = list(
                WebhookEndpoint.objects.filter(
                    store_id__in={e.store_id for e in events}, enabled=True
                )
            )
            WebhookDelivery.objects.bulk_create(
                [
                    WebhookDelivery(endpoint=endpoint, event=event)
                    for event in events
                    for endpoint in endpoints
                    if endpoint.store_id == event.store_id and endpoint.wants(event.type)
                ],
                ignore_conflicts=True,
            )
            OutboxEvent.objects.filter(pk__in=[e.pk for e in events]).update(
                dispatched_at=timezone.now()
            )
            OUTBOX_DISPATCHED.inc(len(events))
    wake_endpoints()
    return len(events)


def dispatch_lock() -> bool:
    """One dispatcher at a time, for this transaction: two fanning out side by side could
    hand an intervention's later event to its endpoint before the earlier one."""
    if connection.vendor != "postgresql":
        return True  # embedded mode (SQLite): one process, nothing to race
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [DISPATCH_LOCK])
        return bool(cursor.fetchone()[0])


def endpoints_with_work(now: datetime) -> QuerySet[WebhookEndpoint]:
    pending = WebhookDelivery.objects.filter(endpoint=OuterRef("pk"), status=DeliveryStatus.PENDING)
    return WebhookEndpoint.objects.filter(
        Exists(pending),
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        Q(lease_until__isnull=True) | Q(lease_until__lte=now),
        enabled=True,
    )


def wake_endpoints() -> None:
    """One send task per endpoint with work due. A lost task is harmless: the next
    dispatcher tick wakes the endpoint again."""
    for endpoint_id in endpoints_with_work(timezone.now()).values_list("pk", flat=True):
        try:
            current_app.signature(
                "outbound.tasks.deliver_webhooks", args=(str(endpoint_id),), queue="webhooks"
            ).apply_async(expires=settings.WEBHOOK_LEASE_SECONDS)
        except Exception as error:  # the broker is down: the next tick tries again
            WEBHOOK_ENQUEUE_FAILURES.inc()
            logger.error("webhook_enqueue_failed", endpoint_id=str(endpoint_id), error=str(error))
            return


def claim(endpoint_id: Any, now: datetime) -> bool:
    """Take the endpoint's lease with a conditional update: one sender per endpoint."""
    return bool(
        WebhookEndpoint.objects.filter(pk=endpoint_id, enabled=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(lease_until=now + timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS))
    )


def backoff(failures: int) -> float:
    return float(
        min(
            settings.WEBHOOK_RETRY_BASE_DELAY * 2 ** max(failures - 1, 0),
            settings.WEBHOOK_RETRY_MAX_DELAY,
        )
    )


def do_deliver_endpoint(endpoint_id: Any) -> dict[str, int]:
    """Send the endpoint's pending deliveries in event order until one fails, the batch
    ends or the lease runs short. A repeat or a concurrent call is a no-op."""
    started = timezone.now()
    if not claim(endpoint_id, started):
        return {"delivered": 0, "failed": 0}
    # Stop starting posts while one more could outlive the lease.
    budget = timedelta(
        seconds=settings.WEBHOOK_LEASE_SECONDS - settings.WEBHOOK_TIMEOUT_SECONDS - 5
    )
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    delivered = failed = 0
    try:
        pending = (
            WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING)
            .select_related("event")
            .order_by("event_id")[: settings.WEBHOOK_SEND_BATCH]
        )
        for delivery in pending:
            if delivered and timezone.now() - started > budget:
                break
            if send_one(endpoint, delivery):
                delivered += 1
            else:
                failed += 1
                break
    finally:
        WebhookEndpoint.objects.filter(pk=endpoint_id).update(lease_until=None)
    if delivered and not failed:
        # More may be waiting: do not wait for the next dispatcher tick.
        transaction.on_commit(wake_endpoints)
    return {"delivered": delivered, "failed": failed}


def send_one(endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> bool:
    outcome = post(endpoint, delivery.event)
    now = timezone.now()
    WEBHOOK_SECONDS.observe(outcome.seconds)
    WEBHOOK_ATTEMPTS.labels("delivered" if outcome.ok else "failed").inc()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=F("attempts") + 1,
        last_status_code=outcome.status_code,
        last_error=outcome.error[:500],
        last_attempt_at=now,
        **({"status": DeliveryStatus.DELIVERED, "delivered_at": now} if outcome.ok else {}),
    )
    if outcome.ok:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            consecutive_failures=0, next_attempt_at=None, last_success_at=now
        )
        return True
    failures = endpoint.consecutive_failures + 1
    disable = failures >= settings.WEBHOOK_DISABLE_AFTER_FAILURES
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        consecutive_failures=failures,
        last_error=outcome.error[:500],
        last_failure_at=now,
        next_attempt_at=now + timedelta(seconds=backoff(failures)),
        **(
            {"enabled": False, "disabled_reason": f"{failures} consecutive failures"}
            if disable
            else {}
        ),
    )
    logger.warning(
        "webhook_delivery_failed",
        endpoint_id=str(endpoint.pk),
        webhook_id=delivery.event.webhook_id,
        error=outcome.error,
        consecutive_failures=failures,
        disabled=disable,
    )
    if disable:
        WEBHOOK_ENDPOINTS_DISABLED.inc()
    return False


def do_replay(
    endpoint: WebhookEndpoint, since: datetime | None = None, webhook_ids: list[str] | None = None
) -> int:
    """Queue the store's events since ``since`` and/or with these ids for this endpoint
    again (created for it if they never were), with their original webhook-id. Events
    past retention are gone. Returns how many will be sent."""
    events = OutboxEvent.objects.filter(store_id=endpoint.store_id)
    selector = Q()
    if since is not None:
        selector |= Q(created_at__gte=since)
    if webhook_ids:
        selector |= Q(webhook_id__in=webhook_ids)
    event_ids = [
        pk
        for pk, event_type in events.filter(selector).values_list("pk", "type")
        if endpoint.wants(event_type)
    ]
    with transaction.atomic():
        WebhookDelivery.objects.bulk_create(
            [WebhookDelivery(endpoint=endpoint, event_id=pk) for pk in event_ids],
            ignore_conflicts=True,
        )
        WebhookDelivery.objects.filter(endpoint=endpoint, event_id__in=event_ids).update(
            status=DeliveryStatus.PENDING, delivered_at=None
        )
    logger.info("webhook_replay_queued", endpoint_id=str(endpoint.pk), events=len(event_ids))
    return len(event_ids)


def do_prune_webhooks(now: datetime | None = None) -> dict[str, int]:
    """Delivered rows past WEBHOOK_RETENTION_DAYS, then events with nothing left to send;
    pending rows stay whatever their age (a disabled endpoint may come back)."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_RETENTION_DAYS)
    deliveries, _ = WebhookDelivery.objects.filter(
        status=DeliveryStatus.DELIVERED, delivered_at__lt=cutoff
    ).delete()
    still_pending = WebhookDelivery.objects.filter(
        event=OuterRef("pk"), status=DeliveryStatus.PENDING
    )
    events, _ = (
        OutboxEvent.objects.filter(dispatched_at__isnull=False, created_at__lt=cutoff)
        .exclude(Exists(still_pending))
        .delete()
    )
    logger.info("webhooks_pruned", deliveries=deliveries, events=events)
    return {"deliveries": deliveries, "events": events}

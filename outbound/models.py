"""The transactional outbox and the subscribers it is delivered to (docs/webhooks.md).

An ``OutboxEvent`` is written in the same transaction as the change it describes, by the
change's one writer (``interventions.models`` for statuses, ``tracking.actions`` for
tracking rows and orders), through ``outbound.outbox``. A beat task fans each event out
to one ``WebhookDelivery`` per matching endpoint of its store; a task per endpoint sends
them in event order.

This app sits at the models layer so that ``interventions.models`` may write to it; it
imports no other app's models but ``stores``.
"""

import uuid

from django.db import models
from django.utils import timezone

from stores.models import Store


class Stream(models.TextChoices):
    INTERVENTION_EVENTS = "intervention-events"
    CONVERSION_EVENTS = "conversion-events"


class WebhookEndpoint(models.Model):
    """A store's subscriber: where events go, signed with its own secret."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    # "whsec_" + base64 of 32 random bytes (Standard Webhooks). Kept in clear because
    # signing needs it; the API and the admin show it once, at creation.
    secret = models.CharField(max_length=100, editable=False)
    # Event types to send ("intervention.sent", or a prefix "tracking.*"); empty: all.
    event_types = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    # After a failure nothing is sent to the endpoint before this (exponential backoff).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Held by the one task sending to this endpoint: events go out one at a time, in order.
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["store", "created_at", "id"]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        if not self.event_types:
            return True
        return any(
            event_type == wanted or (wanted.endswith(".*") and event_type.startswith(wanted[:-1]))
            for wanted in self.event_types
        )


class OutboxEvent(models.Model):
    """One change, as other services will read it. Ordered by ``id``: within one
    intervention, ids follow the order of the changes (docs/webhooks.md, "Ordering")."""

    id = models.BigAutoField(primary_key=True)
    # The Standard Webhooks message id (webhook-id header): the same on every retry and
    # replay, so receivers deduplicate on it.
    webhook_id = models.CharField(max_length=40, unique=True, editable=False)
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="outbox_events")
    stream = models.CharField(max_length=32, choices=Stream.choices)
    type = models.CharField(max_length=64)
    # Not a foreign key: the outbox sits below the interventions app, and an event may
    # outlive the intervention (erasure) until it is delivered and pruned.
    intervention_id = models.UUIDField(null=True, blank=True)
    data = models.JSONField(default=dict)
    occurred_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    # Set when the dispatcher has created its deliveries.
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["id"],
                condition=models.Q(dispatched_at__isnull=True),
                name="outbox_undispatched",
            ),
            models.Index(fields=["store", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.webhook_id}"

    def body(self) -> dict[str, object]:
        """The signed payload, in the Standard Webhooks envelope."""
        return {"type": self.type, "timestamp": self.occurred_at.isoformat(), "data": self.data}


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"


class WebhookDelivery(models.Model):
    """One event for one endpoint: pending until the endpoint answers 2xx."""

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["event_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="one_delivery_per_endpoint")
        ]
        indexes = [
            models.Index(fields=["endpoint", "status", "event"]),
            models.Index(fields=["status", "delivered_at"]),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event_id} → {self.endpoint_id} ({self.status})"

"""What happened to an intervention after it left: delivered, opened, clicked, converted
(docs/analytics.md)."""

from django.db import models
from django.utils import timezone

from interventions.models import Intervention
from stores.models import Store


class TrackingKind(models.TextChoices):
    DELIVERED = "delivered"
    DISPLAYED = "displayed"
    OPENED = "opened"
    CLICKED = "clicked"
    DISMISSED = "dismissed"
    CONVERTED = "converted"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    FAILED = "failed"


class TrackingEvent(models.Model):
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="tracking_events")
    intervention = models.ForeignKey(
        Intervention, on_delete=models.CASCADE, related_name="tracking_events"
    )
    kind = models.CharField(max_length=16, choices=TrackingKind.choices)
    # websocket | email_webhook | sms_webhook | push | api | checkout
    source = models.CharField(max_length=32)
    occurred_at = models.DateTimeField(default=timezone.now)
    revenue = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # A repeated open or click within TRACKING_DEDUPE_SECONDS: kept as reported (the raw
    # row stays), never counted.
    duplicate = models.BooleanField(default=False)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [
            models.Index(fields=["intervention", "kind"]),
            models.Index(fields=["store", "kind", "occurred_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} ({self.source})"

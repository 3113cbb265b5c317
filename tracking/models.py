"""What happened to an intervention after it left: delivered, opened, clicked, converted
(docs/analytics.md)."""

from django.db import models
from django.utils import timezone

from interventions.models import Cart, Intervention
from stores.models import Shopper, Store


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
    # An open the ESP attributes to a privacy proxy (Apple Mail Privacy Protection…):
    # kept, never counted as a human open (docs/analytics.md).
    machine = models.BooleanField(default=False)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        indexes = [
            models.Index(fields=["intervention", "kind"]),
            models.Index(fields=["store", "kind", "occurred_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} ({self.source})"


class Conversion(models.Model):
    """One order, whether or not an intervention earned it: idempotent on (store, order_id).

    ``intervention`` is the primary touch that earned it under the attribution model (none
    when nothing touched the shopper within the window): the order is counted once, on
    it; ``recovered_revenue`` is then the order's value net of the discount it gave.
    """

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="conversions")
    order_id = models.CharField(max_length=200)
    shopper = models.ForeignKey(
        Shopper, on_delete=models.SET_NULL, null=True, blank=True, related_name="conversions"
    )
    user_id = models.CharField(max_length=200)
    cart = models.ForeignKey(
        Cart, on_delete=models.SET_NULL, null=True, blank=True, related_name="conversions"
    )
    cart_external_id = models.CharField(max_length=200, blank=True)
    value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    discount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    intervention = models.ForeignKey(
        Intervention,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversions",
    )
    recovered_revenue = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    # The model that shared the order out (tracking.attribution) and the shares:
    # [{"intervention_id", "weight", "recovered_revenue"}], the primary one first.
    attribution_model = models.CharField(max_length=16, blank=True)
    credits = models.JSONField(default=list, blank=True)
    # api | checkout
    source = models.CharField(max_length=32)
    # What the caller sent, hashed: a repeat with another body is a conflict, not a no-op.
    fingerprint = models.CharField(max_length=64, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["store", "order_id"], name="unique_order_per_store")
        ]
        indexes = [
            models.Index(fields=["intervention"]),
            models.Index(fields=["store", "occurred_at"]),
        ]

    def __str__(self) -> str:
        return f"order {self.order_id}"


class Cohort(models.TextChoices):
    """Which day an intervention counts on: the day it was sent (performance, channels) or
    the day it was decided (the funnel, which also counts what was never sent)."""

    SENT = "sent"
    DECIDED = "decided"


class Rollup(models.Model):
    """What every rollup row is: one store's figures for one store-local day, recounted
    from the raw rows by ``tracking.rollups`` (docs/analytics.md, "Rollups").

    No unique constraint: a recount deletes and re-inserts a store's days under the store's
    row lock, and a campaign's deletion may fold two keys into one (campaign → NULL), which
    the readers sum anyway.
    """

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    refreshed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class SendRollup(Rollup):
    """A rollup of sends: keyed by campaign, variant and channel as well."""

    campaign = models.ForeignKey(
        "campaigns.Campaign", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    variant = models.CharField(max_length=64, blank=True)
    channel = models.CharField(max_length=16)

    class Meta:
        abstract = True


class DailyRollup(SendRollup):
    """Counts per store x store-local day x cohort x campaign x variant x channel."""

    cohort = models.CharField(max_length=8, choices=Cohort.choices)
    # Interventions of the cohort: sent ones for "sent", every decision for "decided".
    interventions = models.PositiveIntegerField(default=0)
    suppressed = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    # Interventions opened / clicked at least once, duplicates never.
    opened = models.PositiveIntegerField(default=0)
    clicked = models.PositiveIntegerField(default=0)
    # Orders attributed to the cohort's interventions (all currencies).
    converted = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["store_id", "cohort", "day", "id"]
        indexes = [models.Index(fields=["store", "cohort", "day"])]

    def __str__(self) -> str:
        return f"{self.cohort} {self.day} {self.channel}"


class RevenueRollup(SendRollup):
    """Attributed orders and recovered revenue per currency, on the same key as
    ``DailyRollup``: amounts in different currencies are never added."""

    cohort = models.CharField(max_length=8, choices=Cohort.choices)
    # "" for orders reported without one (no value to count).
    currency = models.CharField(max_length=3, blank=True)
    # Orders whose primary intervention is on this key: each order on exactly one key, so
    # these add up to the headline totals.
    converted = models.PositiveIntegerField(default=0)
    # None when none of these orders had a value.
    revenue = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    discount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    # The same orders as the attribution model shares them (docs/analytics.md, "Shares"):
    # orders with a share on this key (an order counts on every key it has a share on),
    # the sum of those shares (fractional under linear) and of their revenue shares. Equal
    # to the three above under last and first touch.
    credited_orders = models.PositiveIntegerField(default=0)
    credited = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    credited_revenue = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)

    class Meta:
        ordering = ["store_id", "cohort", "day", "id"]
        indexes = [models.Index(fields=["store", "cohort", "day"])]

    def __str__(self) -> str:
        return f"{self.cohort} {self.day} {self.currency} {self.revenue}"


class SuppressionRollup(SendRollup):
    """Suppressed decisions per reason (numbers folded to N) on the decided day."""

    reason = models.CharField(max_length=500)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["store_id", "day", "id"]
        indexes = [models.Index(fields=["store", "day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.reason}: {self.count}"


class CartRollup(Rollup):
    """Carts abandoned on the day, the funnel's first step: carts have no campaign,
    variant or channel, so they get a row of their own."""

    abandoned = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["store_id", "day", "id"]
        indexes = [models.Index(fields=["store", "day"])]

    def __str__(self) -> str:
        return f"{self.day}: {self.abandoned} carts"


class FailureOutcome(models.TextChoices):
    """How a delivery failed: a send attempt's outcome, or a provider's report after it."""

    PERMANENT = "permanent_error"
    TRANSIENT = "transient_error"
    WORKER_LOST = "worker_lost"
    AFTER_SEND = "after_send"


class FailureRollup(Rollup):
    """Delivery failures per channel, outcome and reason on the day they happened (the
    attempt's start, the report's time): a failed attempt's reason is the transport's code
    (the text before ":" in its error), a provider report's is its kind (bounced,
    complained, failed; duplicates never)."""

    channel = models.CharField(max_length=16)
    outcome = models.CharField(max_length=20, choices=FailureOutcome.choices)
    reason = models.CharField(max_length=500)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["store_id", "day", "id"]
        indexes = [models.Index(fields=["store", "day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.outcome} {self.reason}: {self.count}"

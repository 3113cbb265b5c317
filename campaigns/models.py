"""Campaigns: rules that turn cart events into interventions, their lifecycle and experiments.

See docs/campaigns.md. ``Campaign.status`` changes only through
``campaigns.actions.do_transition_campaign`` (one audit row per change); exposures are
written only by ``record_exposure`` below.
"""

from typing import Any

from django.db import models
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from stores.models import AttributionModel, Shopper, Store


class Trigger(models.TextChoices):
    CART_ABANDONED = "cart_abandoned"
    PREDICTION_HIGH = (
        "prediction_high"  # the prediction says intervene: probability under threshold
    )
    TIME_BASED = "time_based"  # fires delay_minutes after abandonment if the cart is still open


class CampaignChannel(models.TextChoices):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    WEBSOCKET = "websocket"
    ALL = "all"  # the shopper's preferred channel, falling back along the store's chain


class CampaignKind(models.TextChoices):
    TRIGGERED = "triggered"  # a cart event fires it, one shopper at a time
    SCHEDULED = "scheduled"  # celery beat sends to its audience at a time or on a recurrence


class CampaignStatus(models.TextChoices):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ARCHIVED = "archived"


#   draft ──▶ scheduled ──▶ running ◀──▶ paused
#     │                       ▲  │          │
#     └───────────────────────┘  └──▶ completed ◀┘ ──▶ archived
ALLOWED_CAMPAIGN_TRANSITIONS: dict[str, frozenset[str]] = {
    CampaignStatus.DRAFT: frozenset(
        {CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.ARCHIVED}
    ),
    CampaignStatus.SCHEDULED: frozenset(
        {CampaignStatus.RUNNING, CampaignStatus.DRAFT, CampaignStatus.ARCHIVED}
    ),
    CampaignStatus.RUNNING: frozenset({CampaignStatus.PAUSED, CampaignStatus.COMPLETED}),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.RUNNING, CampaignStatus.COMPLETED}),
    CampaignStatus.COMPLETED: frozenset({CampaignStatus.ARCHIVED}),
    CampaignStatus.ARCHIVED: frozenset(),
}
# Conditions, content and allocation may be changed freely only while nobody can be
# exposed to the campaign; a scheduled one is about to go live, so it is frozen too.
EDITABLE_STATUSES = frozenset({CampaignStatus.DRAFT, CampaignStatus.PAUSED})

DEFAULT_ATTRIBUTION_WINDOW_HOURS = 72
DEFAULT_BANDIT_FLOOR_PERCENT = 10.0


class AllocationMode(models.TextChoices):
    # A fixed split, read by the statistics (and optionally auto-promoted when conclusive).
    TEST = "test"
    # Thompson sampling moves new shoppers towards the arm most likely best (docs/campaigns.md).
    BANDIT = "bandit"


class Campaign(models.Model):
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="campaigns")
    name = models.CharField(max_length=200)
    # A row created in code without a status is live, as every campaign was before the
    # lifecycle existed; the API and the admin create drafts.
    status = models.CharField(
        max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.RUNNING
    )
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    launched_at = models.DateTimeField(
        null=True, blank=True, help_text="When it first ran: the experiment's start."
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    kind = models.CharField(
        max_length=16, choices=CampaignKind.choices, default=CampaignKind.TRIGGERED
    )
    # Blank for a scheduled campaign (check_campaign requires it for a triggered one).
    trigger = models.CharField(max_length=32, choices=Trigger.choices, blank=True)
    delay_minutes = models.PositiveIntegerField(default=0)
    channel = models.CharField(max_length=16, choices=CampaignChannel.choices)
    template_key = models.CharField(max_length=100, blank=True)
    priority = models.IntegerField(default=0, help_text="Higher wins when several campaigns match.")
    # Conditions; empty means "any".
    min_cart_value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    max_cart_value = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    segments = models.JSONField(default=list, blank=True)
    min_probability = models.FloatField(null=True, blank=True)
    max_probability = models.FloatField(null=True, blank=True)
    discount_percent = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    # The audience rule (campaigns/audiences.py, docs/campaigns.md); {} means everyone.
    audience = models.JSONField(default=dict, blank=True)
    # A scheduled campaign's recurrence (5-field cron in the store's timezone) or one-off
    # time; mirrored into a django-celery-beat PeriodicTask by campaigns.actions.scheduling.
    schedule_cron = models.CharField(
        max_length=100, blank=True, help_text="e.g. '0 10 * * *': every day at 10:00 store time."
    )
    schedule_at = models.DateTimeField(null=True, blank=True, help_text="Or once, at this time.")
    periodic_task = models.OneToOneField(
        PeriodicTask, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Budgets (campaigns/budgets.py); empty means unlimited.
    budget_sends_per_day = models.PositiveIntegerField(null=True, blank=True)
    budget_sends_total = models.PositiveIntegerField(null=True, blank=True)
    budget_discount = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Maximum sum of discount value offered (cart value times percent).",
    )
    # {"sms": "50.00", "email": "5.00", "push": "1.00"}: cost caps per channel, priced
    # with settings.CHANNEL_COSTS (in CHANNEL_COST_CURRENCY).
    budget_channel_costs = models.JSONField(default=dict, blank=True)
    # Experiment: [{"key", "weight", and optional "template_key", "channel",
    # "discount_percent", "delay_minutes" overriding the campaign's}]; empty: no experiment.
    variants = models.JSONField(default=list, blank=True)
    holdout_percent = models.FloatField(
        default=0.0, help_text="Share of shoppers who get no intervention, to measure its effect."
    )
    attribution_window_hours = models.PositiveIntegerField(
        default=DEFAULT_ATTRIBUTION_WINDOW_HOURS,
        help_text="A checkout this long after exposure counts as a conversion for the arm.",
    )
    mode = models.CharField(
        max_length=8,
        choices=AllocationMode.choices,
        default=AllocationMode.TEST,
        help_text="test: a fixed split judged by the statistics; bandit: optimise the split.",
    )
    auto_promote = models.BooleanField(
        default=False,
        help_text="When the sequential test is conclusive (and the sample ratio is sound), "
        "send every new shopper to the winner. Can be undone.",
    )
    bandit_floor_percent = models.FloatField(
        default=DEFAULT_BANDIT_FLOOR_PERCENT,
        help_text="Bandit mode: the share every arm keeps however badly it does.",
    )
    # The split new shoppers get when it differs from the variants' weights: the bandit's
    # latest, or a promoted winner's {winner: 100, others: 0}. Null: the variants' weights.
    live_weights = models.JSONField(null=True, blank=True)
    attribution_model = models.CharField(
        max_length=16,
        choices=AttributionModel.choices,
        blank=True,
        help_text="How orders are credited when this campaign's send is the last touch; "
        "empty: the store's model.",
    )
    # Frozen on completion: later conversions no longer move a finished test.
    results = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["store", "-priority", "name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        """Whether events may fire it (what ``is_active`` meant before the lifecycle)."""
        return self.status == CampaignStatus.RUNNING

    @property
    def has_experiment(self) -> bool:
        return bool(self.variants)

    def variant(self, key: str) -> dict[str, Any] | None:
        return next((v for v in self.variants if v.get("key") == key), None)

    def configured_weights(self) -> dict[str, float]:
        return {v["key"]: float(v["weight"]) for v in self.variants}

    def arm_weights(self) -> dict[str, float]:
        """The split new shoppers get now (exposed shoppers keep their recorded arm)."""
        configured = self.configured_weights()
        live = self.live_weights or {}
        if set(live) != set(configured):
            # Stale after the arms were edited: the marketer's split is what they see.
            return configured
        return {key: float(live[key]) for key in configured}


class CampaignChange(models.Model):
    """One audit row per change to a campaign: who, when, and each field before and after."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="changes")
    actor = models.CharField(max_length=200, help_text="A user's name or 'api key: <name>'.")
    action = models.CharField(max_length=32)  # created | updated | launch | pause | ...
    changes = models.JSONField(default=dict, blank=True)  # {field: [before, after]}
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["campaign", "at", "id"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}"


class Exposure(models.Model):
    """A shopper's first assignment in a campaign's experiment; it wins over any new hash."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="exposures")
    shopper = models.ForeignKey(
        Shopper, on_delete=models.CASCADE, related_name="campaign_exposures"
    )
    arm = models.CharField(max_length=64)  # a variant key or "holdout"
    exposed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["campaign", "exposed_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "shopper"], name="one_exposure_per_shopper")
        ]

    def __str__(self) -> str:
        return f"{self.shopper_id} → {self.arm}"


def record_exposure(campaign: Campaign, shopper: Shopper, arm: str) -> Exposure:
    """The shopper's exposure, recorded now with ``arm`` unless one exists: the first wins.

    INSERT ... ON CONFLICT DO NOTHING, so two simultaneous events cannot record two arms.
    """
    Exposure.objects.bulk_create(
        [Exposure(campaign=campaign, shopper=shopper, arm=arm, exposed_at=timezone.now())],
        ignore_conflicts=True,
    )
    return Exposure.objects.get(campaign=campaign, shopper=shopper)


class CampaignSpend(models.Model):
    """What a campaign has committed to send: one row per store-local day, plus the
    ``TOTAL_DAY`` row for the totals. A budgeted campaign's rows are locked from a send's
    charge to its commit (campaigns/budgets.py), so its concurrent sends take turns."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="spend")
    day = models.DateField()
    sends = models.PositiveIntegerField(default=0)
    discount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    cost_email = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    cost_sms = models.DecimalField(max_digits=14, decimal_places=4, default=0)
    cost_push = models.DecimalField(max_digits=14, decimal_places=4, default=0)

    class Meta:
        ordering = ["campaign", "day"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "day"], name="one_spend_row_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.day}: {self.sends} sends"


class RunStatus(models.TextChoices):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class CampaignRun(models.Model):
    """One scheduled send of a campaign, for one beat slot: unique per (campaign, slot), so
    a tick delivered twice finds the run that is already there (docs/campaigns.md)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="runs")
    slot = models.DateTimeField(help_text="The scheduled time this run is for.")
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    selected = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    skip_reasons = models.JSONField(default=dict, blank=True)  # {reason: count}
    # A worker holds the run until then; a killed worker's run is taken over after it.
    lease_until = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["campaign", "-slot", "id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "slot"], name="one_run_per_slot")
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} @ {self.slot:%Y-%m-%d %H:%M}: {self.status}"


def record_exposures(campaign: Campaign, picked: dict[Any, str]) -> dict[Any, str]:
    """``record_exposure`` for many shoppers at once (``{shopper id: arm}``): one insert
    with ON CONFLICT DO NOTHING, then the stored arms, which win over the new picks."""
    now = timezone.now()
    Exposure.objects.bulk_create(
        [
            Exposure(campaign=campaign, shopper_id=shopper_id, arm=arm, exposed_at=now)
            for shopper_id, arm in picked.items()
        ],
        ignore_conflicts=True,
    )
    return dict(
        Exposure.objects.filter(campaign=campaign, shopper_id__in=list(picked)).values_list(
            "shopper_id", "arm"
        )
    )


class AllocationChange(models.Model):
    """The split new shoppers got from this point on, and how many treated shoppers were
    exposed before it: the sample-ratio check compares exposures with the split in force
    when each came in (bandit re-weighting, a promotion or its undo change it)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="allocations")
    at = models.DateTimeField(default=timezone.now)
    weights = models.JSONField()  # {arm key: percent of treated shoppers}
    treated_exposures_before = models.PositiveIntegerField()
    reason = models.CharField(max_length=32)  # bandit | promotion | undo | edited

    class Meta:
        ordering = ["campaign", "at", "id"]

    def __str__(self) -> str:
        return f"{self.reason} at {self.at:%Y-%m-%d %H:%M}"


class ResultSnapshot(models.Model):
    """One computation of a campaign's results; the newest is what ``/results`` serves and
    the series of them draws the cumulative lift over time."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="snapshots")
    computed_at = models.DateTimeField(default=timezone.now)
    trigger = models.CharField(max_length=16)  # beat | refresh | completed | first_read
    document = models.JSONField()

    class Meta:
        ordering = ["campaign", "computed_at", "id"]
        indexes = [
            models.Index(fields=["campaign", "-computed_at"], name="snapshot_latest_per_campaign")
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} at {self.computed_at:%Y-%m-%d %H:%M}"


class Promotion(models.Model):
    """An automatic promotion of a winner: the numbers it was decided on, the split before
    (restored by an undo), and the undo if there was one."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="promotions")
    winner = models.CharField(max_length=64)
    decided_at = models.DateTimeField(default=timezone.now)
    evidence = models.JSONField()  # srm, decision and the winner's row of the results
    previous_weights = models.JSONField(null=True, blank=True)  # live_weights before
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["campaign", "decided_at", "id"]

    def __str__(self) -> str:
        return f"{self.winner} promoted at {self.decided_at:%Y-%m-%d %H:%M}"

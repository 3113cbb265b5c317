"""Scheduled campaigns: their beat schedule and their runs (docs/campaigns.md).

A scheduled campaign's recurrence (cron, in the store's timezone) or one-off time lives
in a django-celery-beat ``PeriodicTask`` that ``do_sync_schedule`` keeps in step with
the campaign, so beat's DatabaseScheduler runs it, the admin shows it, and it survives
restarts. Each tick runs ``campaigns.tasks.run_scheduled_campaign``, which calls
``do_run_scheduled_campaign``:

- the run is the ``CampaignRun`` of (campaign, slot), unique, where the slot is the
  scheduled time the tick is for, so a tick delivered twice finds the same run;
- a worker claims the run with a conditional update of its lease; a second worker gets
  nothing to do, and a killed worker's run is taken over once its lease expires;
- shoppers are sent in chunks, each one transaction with its budget charge and counters;
  the per-shopper idempotency key makes a redone chunk skip who was already decided.
"""

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from croniter import croniter
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, PeriodicTask
from prometheus_client import Counter

from campaigns.audiences import audience_carts
from campaigns.budgets import BudgetLedger
from campaigns.models import Campaign, CampaignKind, CampaignRun, CampaignStatus, RunStatus
from interventions.actions import do_send_campaign_chunk
from interventions.models import Status

logger = structlog.get_logger(__name__)

RUN_TASK = "campaigns.tasks.run_scheduled_campaign"
# A tick this early still belongs to the coming slot (beat and worker clocks differ).
EARLY_TICK = timedelta(seconds=59)
# Budgets that stop the whole run; a channel's cost cap stops only that channel.
RUN_STOPPERS = ("budget_exhausted:sends_per_day", "budget_exhausted:sends_total")

RUNS = Counter("engine_campaign_runs_total", "Scheduled campaign runs by outcome", ["outcome"])
RUN_SHOPPERS = Counter(
    "engine_campaign_run_shoppers_total", "Shoppers of scheduled runs by outcome", ["outcome"]
)


def check_schedule(values: dict[str, Any]) -> None:
    """A scheduled campaign needs a valid cron or a time; a triggered one a trigger."""
    kind = values.get("kind") or CampaignKind.TRIGGERED
    cron = values.get("schedule_cron") or ""
    if cron and not croniter.is_valid(cron):
        raise ValidationError({"schedule_cron": ["Not a valid 5-field cron expression."]})
    if cron and len(cron.split()) != 5:
        raise ValidationError({"schedule_cron": ["Use 5 fields: minute hour day month weekday."]})
    if kind == CampaignKind.SCHEDULED:
        if not cron and values.get("schedule_at") is None:
            raise ValidationError(
                {"schedule_cron": ["A scheduled campaign needs schedule_cron or schedule_at."]}
            )
        if cron and values.get("schedule_at") is not None:
            raise ValidationError({"schedule_at": ["Give schedule_cron or schedule_at, not both."]})
    elif not values.get("trigger"):
        raise ValidationError({"trigger": ["A triggered campaign needs a trigger."]})


def do_sync_schedule(campaign: Campaign) -> PeriodicTask | None:
    """Create, update or remove the campaign's beat entry; enabled only while running."""
    task = campaign.periodic_task
    if campaign.kind != CampaignKind.SCHEDULED or not (
        campaign.schedule_cron or campaign.schedule_at
    ):
        if task is not None:
            campaign.periodic_task = None
            campaign.save(update_fields=["periodic_task"])
            task.delete()
        return None
    fields: dict[str, Any] = {
        "name": f"campaign {campaign.pk}: {campaign.name}"[:200],
        "task": RUN_TASK,
        "args": json.dumps([campaign.pk]),
        "queue": "campaigns",
        "enabled": campaign.status == CampaignStatus.RUNNING,
        "crontab": None,
        "clocked": None,
        "one_off": False,
        "description": "Scheduled campaign send; edit the schedule on the campaign.",
    }
    if campaign.schedule_cron:
        minute, hour, day_of_month, month_of_year, day_of_week = campaign.schedule_cron.split()
        fields["crontab"], _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            timezone=campaign.store.timezone or "UTC",
        )
    else:
        fields["clocked"], _ = ClockedSchedule.objects.get_or_create(
            clocked_time=campaign.schedule_at
        )
        fields["one_off"] = True
    if task is None:
        task = PeriodicTask.objects.create(**fields)
        campaign.periodic_task = task
        campaign.save(update_fields=["periodic_task"])
    else:
        for name, value in fields.items():
            setattr(task, name, value)
        task.save()
    return task


def current_slot(campaign: Campaign, now: datetime) -> datetime:
    """The scheduled time a tick at ``now`` is for (the latest due one)."""
    if not campaign.schedule_cron:
        return campaign.schedule_at or now.replace(second=0, microsecond=0)
    zone = ZoneInfo(campaign.store.timezone or "UTC")
    local = (now + EARLY_TICK).astimezone(zone)
    slot: datetime = croniter(campaign.schedule_cron, local).get_prev(datetime)
    return slot.astimezone(ZoneInfo("UTC"))


def slot_of(campaign_id: int, now: datetime) -> datetime | None:
    """The slot a tick for this campaign at ``now`` is for (None: no such campaign)."""
    campaign = Campaign.objects.select_related("store").filter(pk=campaign_id).first()
    return current_slot(campaign, now) if campaign is not None else None


def do_run_scheduled_campaign(
    campaign_id: int, now: datetime | None = None, slot: datetime | None = None
) -> CampaignRun | None:
    """Run the campaign's current slot (or ``slot``, on a retry), or resume it; None when
    there is nothing to run. A run another worker holds is returned untouched (see
    ``held_elsewhere_for``)."""
    now = now or timezone.now()
    campaign = Campaign.objects.select_related("store").filter(pk=campaign_id).first()
    if campaign is None or campaign.kind != CampaignKind.SCHEDULED:
        RUNS.labels(outcome="not_scheduled").inc()
        logger.warning("campaign_run_not_scheduled", campaign_id=campaign_id)
        return None
    if campaign.status != CampaignStatus.RUNNING or (
        campaign.ends_at is not None and campaign.ends_at <= now
    ):
        RUNS.labels(outcome="not_running").inc()
        logger.info("campaign_run_skipped_not_running", campaign_id=campaign_id)
        return None
    slot = slot or current_slot(campaign, now)
    try:
        run, _ = CampaignRun.objects.get_or_create(campaign=campaign, slot=slot)
    except IntegrityError:
        run = CampaignRun.objects.get(campaign=campaign, slot=slot)
    lease = timedelta(seconds=settings.CAMPAIGN_RUN_LEASE_SECONDS)
    claimed = (
        CampaignRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + lease)
    )
    if not claimed:
        RUNS.labels(outcome="already_claimed").inc()
        logger.info("campaign_run_already_claimed", campaign_id=campaign_id, run_id=run.pk)
        run.refresh_from_db()
        return run
    try:
        send_run(campaign, run, now, lease)
    except Exception as exc:
        # Released at once, so the task's retry can take the run over without waiting.
        CampaignRun.objects.filter(pk=run.pk).update(error=str(exc)[:500], lease_until=None)
        RUNS.labels(outcome="error").inc()
        logger.exception("campaign_run_failed", campaign_id=campaign_id, run_id=run.pk)
        raise
    RUNS.labels(outcome="finished").inc()
    run.refresh_from_db()
    return run


def held_elsewhere_for(run: CampaignRun, now: datetime) -> float | None:
    """Seconds until another worker's lease on this unfinished run expires, or None.

    A worker process killed mid-run is requeued at once (reject_on_worker_lost) while
    its lease still stands: the task retries after the lease rather than dropping the run.
    """
    if run.status != RunStatus.RUNNING or run.lease_until is None or run.lease_until <= now:
        return None
    return (run.lease_until - now).total_seconds()


def send_run(campaign: Campaign, run: CampaignRun, now: datetime, lease: timedelta) -> None:
    # One cart per shopper (their latest in the audience), in shopper order so chunks
    # are stable across a resume.
    selection = (
        audience_carts(campaign.store, campaign.audience, now)
        .order_by("shopper_id", "-updated_at")
        .distinct("shopper_id")
    )
    if not run.selected:
        run.selected = selection.count()
        CampaignRun.objects.filter(pk=run.pk).update(selected=run.selected)
    cursor: Any = 0
    while True:
        carts = list(
            selection.filter(shopper_id__gt=cursor).select_related("shopper")[
                : settings.CAMPAIGN_RUN_CHUNK
            ]
        )
        if not carts:
            break
        cursor = carts[-1].shopper_id
        stopped = send_chunk(campaign, run, carts, now)
        CampaignRun.objects.filter(pk=run.pk).update(lease_until=timezone.now() + lease)
        if stopped:
            rest = selection.filter(shopper_id__gt=cursor).count()
            if rest:
                add_counts(run.pk, skipped={stopped: rest})
            break
    CampaignRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FINISHED, finished_at=timezone.now(), lease_until=None
    )


def send_chunk(campaign: Campaign, run: CampaignRun, carts: list[Any], now: datetime) -> str:
    """One transaction: charge, decide, store, count. Returns the run-stopping budget, if any."""
    with transaction.atomic():
        ledger = BudgetLedger(campaign, now)
        result = do_send_campaign_chunk(campaign, carts, run.pk, now, charge=ledger.charge)
        ledger.save()
        sent = 0
        skipped: dict[str, int] = {}
        if result.already:
            skipped["already_decided_in_this_run"] = result.already
        stopped = ""
        for intervention in result.decided:
            if intervention.status in (Status.QUEUED, Status.SCHEDULED):
                sent += 1
                continue
            reason = skip_reason(intervention.status_reason)
            skipped[reason] = skipped.get(reason, 0) + 1
            if reason in RUN_STOPPERS:
                stopped = reason
        add_counts(run.pk, sent=sent, skipped=skipped)
    RUN_SHOPPERS.labels(outcome="sent").inc(sent)
    RUN_SHOPPERS.labels(outcome="skipped").inc(sum(skipped.values()))
    return stopped


def skip_reason(status_reason: str) -> str:
    """A short, countable reason: ``suppressed: quiet hours ...`` → ``quiet hours ...``."""
    reason = (
        status_reason.split(": ", 1)[-1]
        if status_reason.startswith(("suppressed", "failed"))
        else status_reason
    )
    return reason[:80] or "unknown"


@transaction.atomic
def add_counts(run_id: Any, sent: int = 0, skipped: dict[str, int] | None = None) -> None:
    skipped = skipped or {}
    run = CampaignRun.objects.select_for_update().get(pk=run_id)
    reasons = dict(run.skip_reasons)
    for reason, count in skipped.items():
        reasons[reason] = reasons.get(reason, 0) + count
    CampaignRun.objects.filter(pk=run_id).update(
        sent=F("sent") + sent, skipped=F("skipped") + sum(skipped.values()), skip_reasons=reasons
    )

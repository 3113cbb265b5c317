"""A campaign's lifecycle and edits, each change with its audit row (``CampaignChange``).

draft → (scheduled →) running ⇄ paused → completed → archived; see docs/campaigns.md.
"""

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from campaigns.actions.results import campaign_results
from campaigns.actions.scheduling import do_sync_schedule
from campaigns.models import (
    ALLOWED_CAMPAIGN_TRANSITIONS,
    EDITABLE_STATUSES,
    AllocationChange,
    Campaign,
    CampaignChange,
    CampaignStatus,
    ResultSnapshot,
)
from stores import audit

logger = structlog.get_logger(__name__)

# Changing these while shoppers are exposed would change the test under them.
ALLOCATION_FIELDS = frozenset({"variants", "holdout_percent", "mode"})
# A running (or scheduled) campaign may still be renamed, reprioritised or given an end.
LIVE_EDITABLE_FIELDS = (
    frozenset(
        {
            "name",
            "priority",
            "ends_at",
            "starts_at",
            "attribution_window_hours",
            # A marketer may move a running send's time or raise/lower its budgets.
            "schedule_cron",
            "schedule_at",
            "budget_sends_per_day",
            "budget_sends_total",
            "budget_discount",
            "budget_channel_costs",
            "auto_promote",
            "bandit_floor_percent",
            "attribution_model",
        }
    )
    | ALLOCATION_FIELDS
)
# A finished campaign is a record; only its name may still change.
FINISHED_EDITABLE_FIELDS = frozenset({"name"})

# command: (the statuses it applies to, the status it leads to)
COMMANDS: dict[str, tuple[frozenset[str], str]] = {
    "launch": (frozenset({CampaignStatus.DRAFT, CampaignStatus.SCHEDULED}), CampaignStatus.RUNNING),
    "pause": (frozenset({CampaignStatus.RUNNING}), CampaignStatus.PAUSED),
    "resume": (frozenset({CampaignStatus.PAUSED}), CampaignStatus.RUNNING),
    "complete": (
        frozenset({CampaignStatus.RUNNING, CampaignStatus.PAUSED}),
        CampaignStatus.COMPLETED,
    ),
    "archive": (frozenset({CampaignStatus.COMPLETED}), CampaignStatus.ARCHIVED),
}


class CampaignConflict(Exception):
    """The change cannot apply to the campaign in its current state (HTTP 409)."""


def json_value(value: Any) -> Any:
    """Decimals and datetimes as strings, for the audit row."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def do_record_change(
    campaign: Campaign, actor: str, action: str, changes: Mapping[str, tuple[Any, Any]]
) -> CampaignChange:
    """The campaign's own history row, and the same change in the store's audit log
    (docs/operations.md#audit-log): the history goes with the campaign, the log stays."""
    values = {field: json_value([before, after]) for field, (before, after) in changes.items()}
    audit.do_record_audit(campaign, actor, action, values)
    return CampaignChange.objects.create(
        campaign=campaign, actor=actor[:200], action=action, changes=values
    )


@transaction.atomic
def do_transition_campaign(
    campaign: Campaign, command: str, actor: str, now: datetime | None = None
) -> Campaign:
    """The only writer of ``Campaign.status``: refuses what the lifecycle does not allow.

    Launching a campaign whose ``starts_at`` is still ahead schedules it. Completing
    freezes its results, so later checkouts no longer move a finished test.
    """
    now = now or timezone.now()
    sources, target = COMMANDS[command]
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    current = locked.status
    if command == "launch" and locked.starts_at is not None and locked.starts_at > now:
        target = CampaignStatus.SCHEDULED
    if current not in sources or target not in ALLOWED_CAMPAIGN_TRANSITIONS[current]:
        raise CampaignConflict(
            f"Cannot {command} campaign '{locked.name}': it is {current}, "
            f"and a {current} campaign cannot become {target}."
        )
    changes: dict[str, tuple[Any, Any]] = {"status": (current, target)}
    locked.status = target
    if target == CampaignStatus.RUNNING and locked.launched_at is None:
        changes["launched_at"] = (None, now)
        locked.launched_at = now
    if target == CampaignStatus.COMPLETED:
        changes["completed_at"] = (None, now)
        locked.completed_at = now
        locked.results = campaign_results(locked, now) if locked.has_experiment else None
        if locked.results is not None:
            # The last point of the lift chart is the frozen verdict.
            ResultSnapshot.objects.create(
                campaign=locked, computed_at=now, trigger="completed", document=locked.results
            )
    locked.save(update_fields=[*changes, "results", "updated_at"])
    do_record_change(locked, actor, command, changes)
    do_sync_schedule(locked)
    campaign.refresh_from_db()
    return campaign


# Who the history names for the changes the calendar makes.
CALENDAR_ACTOR = "beat (campaign calendar)"


def do_follow_campaign_calendar(now: datetime | None = None) -> dict[str, int]:
    """What beat runs every minute: a scheduled campaign whose ``starts_at`` has come
    starts running, and a running or paused one whose ``ends_at`` has passed completes
    (its results frozen), each through ``do_transition_campaign`` so the history and the
    audit log say the calendar did it. A campaign a marketer moved in the meantime is
    left as they put it."""
    now = now or timezone.now()
    due = {
        "launch": Campaign.objects.filter(status=CampaignStatus.SCHEDULED, starts_at__lte=now),
        "complete": Campaign.objects.filter(
            status__in=[CampaignStatus.RUNNING, CampaignStatus.PAUSED], ends_at__lte=now
        ),
    }
    moved = dict.fromkeys(due, 0)
    for command, campaigns in due.items():
        for campaign in campaigns.order_by("pk"):
            try:
                do_transition_campaign(campaign, command, CALENDAR_ACTOR, now)
            except CampaignConflict:
                logger.info("campaign_calendar_skipped", campaign_id=campaign.pk, command=command)
                continue
            moved[command] += 1
            logger.info("campaign_calendar_moved", campaign_id=campaign.pk, command=command)
    return moved


@transaction.atomic
def do_create_campaign(campaign: Campaign, actor: str) -> Campaign:
    """Save a new campaign (checked by ``check_campaign``) as a draft, until launched."""
    campaign.status = CampaignStatus.DRAFT
    campaign.save()
    do_sync_schedule(campaign)
    do_record_change(
        campaign,
        actor,
        "created",
        {
            field.name: (None, getattr(campaign, field.name))
            for field in Campaign._meta.concrete_fields
            if field.editable and field.name not in ("id", "store", "periodic_task")
        },
    )
    return campaign


def changes_to(campaign: Campaign, values: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{field: (before, after)}`` for the values that differ from the campaign's."""
    return {
        field: (getattr(campaign, field), value)
        for field, value in values.items()
        if json_value(getattr(campaign, field)) != json_value(value)
    }


def check_editable(campaign: Campaign, values: Mapping[str, Any]) -> None:
    """Raise ``CampaignConflict`` if these values cannot be applied in the current status."""
    refusal = edit_refusal(campaign, set(changes_to(campaign, values)))
    if refusal:
        raise CampaignConflict(refusal)


def edit_refusal(campaign: Campaign, fields: set[str]) -> str | None:
    """Why these fields cannot change now, or None."""
    if campaign.status in EDITABLE_STATUSES:
        return None
    if campaign.status in (CampaignStatus.COMPLETED, CampaignStatus.ARCHIVED):
        frozen = sorted(fields - FINISHED_EDITABLE_FIELDS)
        if frozen:
            return (
                f"Campaign '{campaign.name}' is {campaign.status}: only its name can change "
                f"(not {', '.join(frozen)})."
            )
        return None
    blocked = sorted(fields - LIVE_EDITABLE_FIELDS)
    if blocked:
        return (
            f"Campaign '{campaign.name}' is {campaign.status}: pause it to change "
            f"{', '.join(blocked)}."
        )
    if fields & ALLOCATION_FIELDS and campaign.exposures.exists():
        return (
            f"Campaign '{campaign.name}' is {campaign.status} and shoppers are already exposed: "
            f"changing {', '.join(sorted(fields & ALLOCATION_FIELDS))} now would bias the test. "
            "Pause it first, or complete it and start a new one."
        )
    return None


@transaction.atomic
def do_update_campaign(campaign: Campaign, values: Mapping[str, Any], actor: str) -> Campaign:
    """Apply checked ``values``; what is not editable in the current status is a conflict."""
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    changes = changes_to(locked, values)
    if not changes:
        return locked
    check_editable(locked, values)
    for field, (_, value) in changes.items():
        setattr(locked, field, value)
    if "variants" in changes and locked.live_weights is not None:
        # A new split from the marketer replaces the bandit's or a promotion's.
        changes["live_weights"] = (locked.live_weights, None)
        locked.live_weights = None
    if "variants" in changes and locked.exposures.exists():
        AllocationChange.objects.create(
            campaign=locked,
            weights=locked.configured_weights(),
            treated_exposures_before=locked.exposures.exclude(arm="holdout").count(),
            reason="edited",
        )
    locked.save(update_fields=[*changes, "updated_at"])
    do_record_change(locked, actor, "updated", changes)
    do_sync_schedule(locked)
    return locked


def do_set_active(campaign: Campaign, active: bool, actor: str) -> Campaign:
    """``is_active``, as clients knew it before the lifecycle: true launches or resumes,
    false pauses a running campaign; anything else is already what was asked."""
    if active and campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
        return do_transition_campaign(campaign, "launch", actor)
    if active and campaign.status == CampaignStatus.PAUSED:
        return do_transition_campaign(campaign, "resume", actor)
    if not active and campaign.status == CampaignStatus.RUNNING:
        return do_transition_campaign(campaign, "pause", actor)
    if active and not campaign.is_active:
        raise CampaignConflict(
            f"Campaign '{campaign.name}' is {campaign.status}: it cannot become running."
        )
    return campaign


@transaction.atomic
def do_delete_campaign(campaign: Campaign, actor: str) -> None:
    """Only a draft can be deleted: anything that ran is history (complete or archive it)."""
    if campaign.status != CampaignStatus.DRAFT:
        raise CampaignConflict(
            f"Campaign '{campaign.name}' is {campaign.status}: only a draft can be deleted; "
            "complete or archive it instead."
        )
    task = campaign.periodic_task
    audit.do_record_deleted(campaign, actor)
    campaign.delete()
    if task is not None:
        task.delete()

"""Campaign operations for the API and the admin: lifecycle, edits with their audit rows,
validation, audiences and scheduled runs, and experiment results (docs/campaigns.md).

A layer of its own above ``interventions.actions`` (it checks templates through it); the
trigger path in ``interventions.actions.events`` needs only ``campaigns.models``.
"""

from campaigns.actions.allocation import active_promotion, do_promote, do_undo_promotion
from campaigns.actions.audience import audience_preview
from campaigns.actions.lifecycle import (
    COMMANDS,
    CampaignConflict,
    check_editable,
    do_create_campaign,
    do_delete_campaign,
    do_follow_campaign_calendar,
    do_set_active,
    do_transition_campaign,
    do_update_campaign,
)
from campaigns.actions.results import NoExperiment, campaign_results
from campaigns.actions.rules import check_campaign
from campaigns.actions.scheduling import do_run_scheduled_campaign, do_sync_schedule
from campaigns.actions.snapshots import (
    do_refresh_results,
    latest_results,
    lift_series,
    live_experiment_ids,
)
from campaigns.audiences import check_audience

__all__ = [
    "COMMANDS",
    "CampaignConflict",
    "NoExperiment",
    "active_promotion",
    "audience_preview",
    "campaign_results",
    "check_audience",
    "check_campaign",
    "check_editable",
    "do_create_campaign",
    "do_delete_campaign",
    "do_follow_campaign_calendar",
    "do_promote",
    "do_refresh_results",
    "do_run_scheduled_campaign",
    "do_set_active",
    "do_sync_schedule",
    "do_transition_campaign",
    "do_undo_promotion",
    "do_update_campaign",
    "latest_results",
    "lift_series",
    "live_experiment_ids",
]

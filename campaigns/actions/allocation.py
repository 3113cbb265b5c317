"""Who new shoppers go to while a campaign runs: bandit re-weighting and the automatic
promotion of a winner, with its undo (docs/campaigns.md, "Winner and bandit").

Only ``Campaign.live_weights`` changes. Exposed shoppers keep their recorded arm
(``record_exposure``: the first wins), so a new split never moves who already saw what;
each change is an ``AllocationChange`` so the sample-ratio check expects the split that was
in force when each shopper arrived.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns.actions.lifecycle import CampaignConflict, do_record_change
from campaigns.experiments.assignment import HOLDOUT, thompson_weights
from campaigns.experiments.statistics import ArmData
from campaigns.metrics import ALLOCATION_CHANGES
from campaigns.models import (
    AllocationChange,
    AllocationMode,
    Campaign,
    CampaignStatus,
    Promotion,
)

logger = structlog.get_logger(__name__)

AUTO_PROMOTION_ACTOR = "auto-promotion"


def do_apply_allocation(campaign: Campaign, document: dict[str, Any], now: datetime) -> None:
    """After a results computation of a running campaign: re-weight a bandit, or promote a
    conclusive winner when the campaign asks for it."""
    if campaign.mode == AllocationMode.BANDIT:
        do_reweight_bandit(campaign, document, now)
    elif (
        campaign.auto_promote
        and promotion_winner(document) is not None
        and active_promotion(campaign) is None
    ):
        try:
            do_promote(campaign, document, AUTO_PROMOTION_ACTOR, now)
        except CampaignConflict as exc:
            logger.info("campaign_promotion_skipped", campaign_id=campaign.pk, reason=str(exc))


def promotion_winner(document: dict[str, Any]) -> str | None:
    """The arm to promote: only a sequential verdict with a sound sample ratio, which
    ``decide()`` gives only past the minimum sample and runtime."""
    decision = document["decision"]
    if decision["status"] != "significant" or not document["srm"]["ok"]:
        return None
    return decision["winner"]


def treated_exposures(campaign: Campaign) -> int:
    return campaign.exposures.exclude(arm=HOLDOUT).count()


def do_change_split(
    campaign: Campaign, weights: dict[str, float] | None, reason: str, now: datetime
) -> None:
    """Set the live split (None: back to the variants' weights) and record from when."""
    campaign.live_weights = weights
    campaign.save(update_fields=["live_weights", "updated_at"])
    AllocationChange.objects.create(
        campaign=campaign,
        at=now,
        weights=weights or campaign.configured_weights(),
        treated_exposures_before=treated_exposures(campaign),
        reason=reason,
    )
    ALLOCATION_CHANGES.labels(reason).inc()


def do_reweight_bandit(campaign: Campaign, document: dict[str, Any], now: datetime) -> None:
    """Thompson sampling on conversion with the campaign's floor per arm."""
    arms = [
        ArmData(row["key"], row["exposures"], row["conversions"], Decimal(0), Decimal(0))
        for row in document["variants"]
    ]
    # Seeded in tests (BANDIT_RANDOM_SEED) so a split can be asserted; fresh entropy otherwise.
    rng = np.random.default_rng(settings.BANDIT_RANDOM_SEED)
    floor = min(campaign.bandit_floor_percent, 100.0 / len(arms))
    weights = thompson_weights(arms, floor, settings.BANDIT_DRAWS, rng)
    do_change_split(campaign, weights, "bandit", now)
    logger.info("bandit_reweighted", campaign_id=campaign.pk, weights=weights)


@transaction.atomic
def do_promote(
    campaign: Campaign, document: dict[str, Any], actor: str, now: datetime | None = None
) -> Promotion:
    """Send every new shopper to the winner; record the numbers it was decided on."""
    now = now or timezone.now()
    winner = promotion_winner(document)
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    if winner is None or locked.variant(winner) is None:
        raise CampaignConflict(
            f"Campaign '{locked.name}' has no conclusive winner to promote "
            f"({document['decision']['status']})."
        )
    if locked.status != CampaignStatus.RUNNING:
        raise CampaignConflict(f"Campaign '{locked.name}' is {locked.status}: not promoting.")
    if locked.promotions.filter(undone_at__isnull=True).exists():
        # Two computations finishing together: the first one promoted.
        raise CampaignConflict(f"Campaign '{locked.name}' already has a promoted winner.")
    previous = locked.live_weights
    promoted = {key: (100.0 if key == winner else 0.0) for key in locked.configured_weights()}
    do_change_split(locked, promoted, "promotion", now)
    promotion = Promotion.objects.create(
        campaign=locked,
        winner=winner,
        decided_at=now,
        previous_weights=previous,
        evidence={
            "computed_at": document.get("computed_at"),
            "srm": document["srm"],
            "decision": document["decision"],
            "variants": document["variants"],
        },
    )
    do_record_change(locked, actor, "promote", {"live_weights": (previous, promoted)})
    logger.info("campaign_winner_promoted", campaign_id=locked.pk, winner=winner, actor=actor)
    campaign.refresh_from_db()
    return promotion


@transaction.atomic
def do_undo_promotion(campaign: Campaign, actor: str, now: datetime | None = None) -> Promotion:
    """Restore the split from before the promotion. Auto-promotion is switched off, so the
    next computation does not promote again; the marketer may switch it back on."""
    now = now or timezone.now()
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    promotion = locked.promotions.filter(undone_at__isnull=True).order_by("-decided_at").first()
    if promotion is None:
        raise CampaignConflict(f"Campaign '{locked.name}' has no promotion to undo.")
    before = locked.live_weights
    do_change_split(locked, promotion.previous_weights, "undo", now)
    promotion.undone_at = now
    promotion.undone_by = actor[:200]
    promotion.save(update_fields=["undone_at", "undone_by"])
    changes: dict[str, tuple[Any, Any]] = {"live_weights": (before, promotion.previous_weights)}
    if locked.auto_promote:
        locked.auto_promote = False
        locked.save(update_fields=["auto_promote", "updated_at"])
        changes["auto_promote"] = (True, False)
    do_record_change(locked, actor, "undo_promotion", changes)
    logger.info("campaign_promotion_undone", campaign_id=locked.pk, actor=actor)
    campaign.refresh_from_db()
    return promotion


def active_promotion(campaign: Campaign) -> Promotion | None:
    return campaign.promotions.filter(undone_at__isnull=True).order_by("-decided_at").first()

"""A scheduled campaign's send to a chunk of its audience (docs/campaigns.md).

The same decision as every other intake (``build_decided``: opt-outs, suppressions,
quiet hours and frequency caps), with the I/O batched as the bulk trigger does: one
query each for the earlier sends of this run, exposures, reachability and history, one
insert for the interventions and one Celery task per chunk and channel, after commit.

Each intervention carries the run's idempotency key for its shopper
(``campaign-run:<run id>:<shopper id>``), unique per store in the database: a chunk
redone after a worker died skips the shoppers already decided, and two workers racing on
one chunk cannot both insert (the loser's transaction fails and is redone).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from campaigns.experiments.assignment import HOLDOUT, Arm, assign
from campaigns.models import Campaign, record_exposures
from interventions import decisions
from interventions.actions.deciding import announce, build_decided
from interventions.actions.facts import arm_request, facts_from
from interventions.models import Cart, Intervention, InterventionEvent, record_created
from notifications.recipients import reachability


@dataclass
class ChunkResult:
    decided: list[Intervention] = field(default_factory=list)
    already: int = 0  # shoppers this run had decided before (a redone chunk)


def run_key(run_id: Any, shopper_id: Any) -> str:
    return f"campaign-run:{run_id}:{shopper_id}"


def do_send_campaign_chunk(
    campaign: Campaign,
    carts: list[Cart],
    run_id: Any,
    now: datetime,
    charge: Callable[[str, Decimal], str] | None = None,
) -> ChunkResult:
    """Decide, store and (after commit) enqueue one intervention per cart's shopper.

    Call inside a transaction; ``carts`` have their shopper loaded, one cart per shopper.
    """
    store = campaign.store
    keys = {cart.shopper_id: run_key(run_id, cart.shopper_id) for cart in carts}
    done = set(
        Intervention.objects.filter(store=store, idempotency_key__in=keys.values()).values_list(
            "idempotency_key", flat=True
        )
    )
    todo = [cart for cart in carts if keys[cart.shopper_id] not in done]
    result = ChunkResult(already=len(carts) - len(todo))
    if not todo:
        return result
    shoppers = [cart.shopper for cart in todo if cart.shopper is not None]
    arms = experiment_arms(campaign, shoppers)
    reach = reachability(shoppers)
    history = recent_histories([s.pk for s in shoppers], now)
    created: list[tuple[Intervention, InterventionEvent]] = []
    for cart in todo:
        shopper = cart.shopper
        assert shopper is not None  # selected with a live shopper
        arm = arms.get(shopper.pk, "")
        request, discount = arm_request(campaign, arm)
        created.append(
            build_decided(
                store=store,
                shopper=shopper,
                cart=cart,
                request=request,
                # A scheduled send does not ask the registry who is connected right now.
                facts=facts_from(shopper, reach, connected=False),
                history=history.get(shopper.pk, []),
                origin="campaign",
                now=now,
                campaign=campaign,
                variant=arm,
                discount=discount,
                suppressed_by="holdout" if arm == HOLDOUT else "",
                idempotency_key=keys[shopper.pk],
                extra_reasons=[f"scheduled campaign '{campaign.name}'"]
                + ([f"variant: {arm}"] if arm else []),
                charge=charge,
            )
        )
    record_created(created)
    result.decided = [intervention for intervention, _ in created]
    announce(result.decided)
    return result


def experiment_arms(campaign: Campaign, shoppers: list[Any]) -> dict[Any, str]:
    """Each shopper's arm (stored exposures win), as ``experiment_arm`` for one."""
    if not campaign.has_experiment or not shoppers:
        return {}
    # The live split, as for a triggered send: a bandit's or a promoted winner's weights
    # apply to a scheduled audience too (an arm at 0 gets no new shoppers).
    arms = [Arm(key, weight) for key, weight in campaign.arm_weights().items() if weight > 0]
    picked = {
        s.pk: assign(str(campaign.pk), s.external_id, arms, campaign.holdout_percent)
        for s in shoppers
    }
    return record_exposures(campaign, picked)


def recent_histories(
    shopper_ids: list[Any], now: datetime
) -> dict[Any, list[decisions.PastIntervention]]:
    """``recent_history`` for many shoppers in one query."""
    histories: dict[Any, list[decisions.PastIntervention]] = {}
    rows = Intervention.objects.filter(
        shopper_id__in=shopper_ids, created_at__gt=now - timedelta(days=1)
    ).values_list("shopper_id", "channel", "status", "created_at", "sent_at")
    for shopper_id, channel, status, created_at, sent_at in rows:
        histories.setdefault(shopper_id, []).append(
            decisions.PastIntervention(channel, status, sent_at or created_at)
        )
    return histories

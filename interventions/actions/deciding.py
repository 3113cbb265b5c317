"""Deciding and rendering one intervention; the single and bulk intakes share it."""

import time as monotonic_time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

import structlog
from django.db import transaction
from django.utils import timezone

from campaigns.budgets import discount_value
from campaigns.models import Campaign
from interventions import decisions, metrics
from interventions.actions.delivery import dispatch, dispatch_many
from interventions.actions.facts import cart_facts, recent_history, shopper_facts, store_rules
from interventions.actions.personalization import discount_for, render_for
from interventions.models import Cart, Intervention, InterventionEvent, Status, record_created
from stores.models import Shopper, Store
from templates.rendering import RenderError

logger = structlog.get_logger(__name__)


@dataclass
class Outcome:
    """What an event or trigger led to, for the API response."""

    intervention: Intervention | None = None
    created: bool = True
    reasons: list[str] = field(default_factory=list)


def build_decided(
    *,
    store: Store,
    shopper: Shopper,
    cart: Cart | None,
    request: decisions.Request,
    facts: decisions.ShopperFacts,
    history: list[decisions.PastIntervention],
    origin: str,
    now: datetime,
    campaign: Campaign | None = None,
    variant: str = "",
    discount: dict[str, Any] | None = None,
    suppressed_by: str = "",
    personalization: dict[str, Any] | None = None,
    idempotency_key: str = "",
    fingerprint: str = "",
    extra_reasons: Iterable[str] = (),
    charge: Callable[[str, Decimal], str] | None = None,
) -> tuple[Intervention, InterventionEvent]:
    """Decide and render one intervention, unsaved: the single and the bulk paths save.

    ``charge(channel, discount value)`` books a send that will go out against a campaign's
    budget (campaigns/budgets.py) and returns why not ("budget_exhausted:<which>") when it
    does not fit: the intervention is then stored suppressed with that reason.

    Long only because it spells out the intervention's fields once, for both paths.
    """
    started = monotonic_time.perf_counter()
    decision = decisions.decide(request, facts, cart_facts(cart), store_rules(store), history, now)
    discount = discount if discount is not None else discount_for(cart, campaign)
    personalization = personalization or {}
    # Minted before the row, so the rendered links can name the intervention.
    intervention_id = uuid.uuid4()
    version: Any = None
    content: dict[str, Any] = {}
    render_error = ""
    if not suppressed_by and decision.intervene and decision.channel:
        try:
            version, content = render_for(
                store,
                shopper,
                cart,
                decision.channel,
                request.template_key,
                personalization,
                discount,
                intervention_id,
            )
        except RenderError as exc:
            render_error = f"failed: template could not be rendered: {exc}"
    # Charged after rendering: a budgeted campaign's spend rows stay locked from the charge
    # to the commit (campaigns/budgets.py), so the less work follows it, the less its
    # concurrent sends wait. A send that could not be rendered does not go out: no charge.
    if (
        not suppressed_by
        and not render_error
        and charge is not None
        and decision.intervene
        and decision.channel
    ):
        suppressed_by = charge(
            decision.channel, discount_value(discount, cart.value if cart else None)
        )
    if suppressed_by:
        # The caller's own reason not to intervene (an experiment's holdout) or the budget's:
        # stored like any other suppression, so it is counted and explained the same way.
        decision = replace(
            decision,
            intervene=False,
            status=Status.SUPPRESSED,
            channel=None,
            fallback_channels=(),
            reasons=(*decision.reasons, f"suppressed: {suppressed_by}"),
        )
        version, content = None, {}
    reasons = [*extra_reasons, *decision.reasons]
    status = decision.status
    if render_error:
        status = Status.FAILED
        reasons.append(render_error)
    metrics.DECISION_SECONDS.observe(monotonic_time.perf_counter() - started)
    intervention = Intervention(
        id=intervention_id,
        store=store,
        shopper=shopper,
        cart=cart,
        campaign=campaign,
        variant=variant,
        origin=origin,
        requested_channel=request.channel,
        channel=decision.channel or (request.channel if request.channel != "auto" else ""),
        fallback_channels=list(decision.fallback_channels),
        status=status,
        status_reason=reasons[-1][:500] if reasons else "",
        decision={**decision.as_dict(), "reasons": reasons, "discount": discount},
        template_key=request.template_key,
        template_version=version,
        personalization=personalization,
        content=content,
        send_at=decision.send_at,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        queued_at=now if status == Status.QUEUED else None,
    )
    created = InterventionEvent(
        intervention=intervention,
        from_status="",
        to_status=status,
        reason=intervention.status_reason,
        detail={"reasons": reasons},
        at=now,
    )
    return intervention, created


def announce(interventions: list[Intervention]) -> None:
    """Metrics and a log line per decision; queued ones are dispatched after commit."""
    for intervention in interventions:
        metrics.INTERVENTIONS_DECIDED.labels(
            status=intervention.status, channel=intervention.channel or "none"
        ).inc()
        logger.info(
            "intervention_decided",
            intervention_id=str(intervention.pk),
            store_id=str(intervention.store_id),
            status=intervention.status,
            channel=intervention.channel,
            reasons=intervention.decision["reasons"],
        )
    queued = [i for i in interventions if i.status == Status.QUEUED]
    if len(queued) == 1:
        # The row was just written in this request: the inline WebSocket send reuses it.
        transaction.on_commit(partial(dispatch, queued[0].pk, queued[0].channel, queued[0]))
    elif queued:
        transaction.on_commit(partial(dispatch_many, [(i.pk, i.channel) for i in queued]))


def create_decided(
    *,
    store: Store,
    shopper: Shopper,
    cart: Cart | None,
    request: decisions.Request,
    origin: str,
    facts: decisions.ShopperFacts | None = None,
    **fields: Any,
) -> Intervention:
    """Decide, render and store one intervention; dispatch it once the transaction commits.

    ``facts``: the shopper's facts for every channel when the caller already read them
    (an event choosing its campaign); used as they are when the request lets the decision
    choose among all channels, since they are then what would be read again.
    """
    now = timezone.now()
    channels = decisions.ALL_CHANNELS if request.channel == "auto" else (request.channel,)
    if facts is None or request.channel != "auto":
        facts = shopper_facts(shopper, channels)
    # Explicit triggers skip frequency caps, so they need no history.
    history = [] if request.explicit else recent_history(shopper, now)
    intervention, created = build_decided(
        store=store,
        shopper=shopper,
        cart=cart,
        request=request,
        facts=facts,
        history=history,
        origin=origin,
        now=now,
        **fields,
    )
    record_created([(intervention, created)])
    announce([intervention])
    return intervention

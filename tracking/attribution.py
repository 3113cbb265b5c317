"""Which interventions earned an order, and how much of it (docs/analytics.md,
"Attribution"). Pure: touches in, credits out, so each model is tested in a table.

Models (per store, overridable per campaign):

- ``last_touch`` (default): the most recent touch gets the whole order.
- ``first_touch``: the earliest touch in the window gets it.
- ``linear``: every touch in the window gets an equal share.
- ``any_exposure``: every touch in the window gets the whole order (for experiments: each
  exposed arm counts the conversion; the shares add up to more than one order, so the
  headline totals still count the order once, on its primary touch, while the analytics'
  breakdown rows count the shares: docs/analytics.md, "Shares").
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from stores.models import AttributionModel

LAST_TOUCH = AttributionModel.LAST_TOUCH.value
FIRST_TOUCH = AttributionModel.FIRST_TOUCH.value
LINEAR = AttributionModel.LINEAR.value
ANY_EXPOSURE = AttributionModel.ANY_EXPOSURE.value
MODELS = frozenset(AttributionModel.values)
WHOLE = Decimal("1.0000")


@dataclass(frozen=True)
class Touch:
    intervention_id: Any
    sent_at: datetime
    channel: str
    # The campaign's own window and model, when the intervention came from a campaign
    # that sets them; None: the store's.
    window_hours: int | None = None
    model: str = ""


@dataclass(frozen=True)
class Credit:
    intervention_id: Any
    weight: Decimal


@dataclass(frozen=True)
class Attribution:
    model: str
    credits: tuple[Credit, ...]

    @property
    def primary(self) -> Any:
        """The one intervention the order is counted on (once per order)."""
        return self.credits[0].intervention_id if self.credits else None


def in_window(touch: Touch, at: datetime, store_window_hours: int) -> bool:
    window = timedelta(hours=touch.window_hours or store_window_hours)
    return at - window <= touch.sent_at <= at


def attribute(
    touches: list[Touch], at: datetime, store_model: str, store_window_hours: int
) -> Attribution:
    """Credits for an order at ``at``; the primary (counted) intervention first.

    The model is the store's, unless the touch that would win under last touch belongs to
    a campaign that sets its own: that campaign's rules decide how the order is shared.
    """
    eligible = sorted(
        (t for t in touches if in_window(t, at, store_window_hours)),
        key=lambda t: (t.sent_at, str(t.intervention_id)),
    )
    if not eligible:
        return Attribution(eligible_model(None, store_model), ())
    model = eligible_model(eligible[-1], store_model)
    if model == FIRST_TOUCH:
        return Attribution(model, (Credit(eligible[0].intervention_id, WHOLE),))
    if model == LAST_TOUCH:
        return Attribution(model, (Credit(eligible[-1].intervention_id, WHOLE),))
    # Shares are rounded to 4 places: three linear touches get 0.3333 each.
    share = WHOLE if model == ANY_EXPOSURE else (WHOLE / len(eligible)).quantize(WHOLE)
    return Attribution(model, tuple(Credit(t.intervention_id, share) for t in reversed(eligible)))


def eligible_model(last: Touch | None, store_model: str) -> str:
    if last is not None and last.model in MODELS:
        return last.model
    return store_model if store_model in MODELS else LAST_TOUCH

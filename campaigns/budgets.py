"""Campaign budgets: sends per day and in total, discount spend, cost per channel.

Every send a campaign decides is charged to ``CampaignSpend`` rows (the store-local day's
and the ``TOTAL_DAY`` row). For a campaign with a budget, a ``BudgetLedger`` locks both
rows at its first charge (SELECT ... FOR UPDATE), checks and adds in memory, and writes
them back before the commit of the transaction that stores the intervention. So two transactions
charging the same campaign take turns from the charge on, and the budget is never
overshot by decided sends: the bound is zero at decision time. A campaign without any
budget takes no lock (its events would otherwise run one at a time): its usage is added
after the commit. What it does not see is documented in docs/campaigns.md (a
fallback to another channel after the decision is not charged again; a decided send that
is later cancelled is not refunded).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from django.conf import settings
from django.db import connection, transaction
from prometheus_client import Counter

from campaigns.models import Campaign, CampaignSpend

logger = structlog.get_logger(__name__)

# The row holding the campaign's totals (a real date no day row can have).
TOTAL_DAY = date(1970, 1, 1)
COSTED_CHANNELS = ("email", "sms", "push")
BUDGET_EXHAUSTED = Counter(
    "engine_campaign_budget_exhausted_total",
    "Campaign sends refused because a budget ran out",
    ["which"],
)


def cost_per_message(channel: str) -> Decimal:
    # The one price per message the analytics' cost per conversion uses too.
    return Decimal(str(settings.CHANNEL_COSTS.get(channel) or 0))


def discount_value(discount: Mapping[str, Any] | None, cart_value: Decimal | None) -> Decimal:
    """What the offered discount is worth: cart value times percent (0 without a cart)."""
    if not discount or cart_value is None or discount.get("percent") in (None, ""):
        return Decimal(0)
    return (Decimal(cart_value) * Decimal(str(discount["percent"])) / 100).quantize(Decimal("0.01"))


def store_day(campaign: Campaign, now: datetime) -> date:
    return now.astimezone(ZoneInfo(campaign.store.timezone or "UTC")).date()


@dataclass
class Usage:
    sends: int = 0
    discount: Decimal = Decimal(0)
    cost: dict[str, Decimal] = field(default_factory=dict)

    @classmethod
    def of(cls, row: CampaignSpend | None) -> "Usage":
        if row is None:
            return cls(cost={c: Decimal(0) for c in COSTED_CHANNELS})
        return cls(row.sends, row.discount, {c: getattr(row, f"cost_{c}") for c in COSTED_CHANNELS})

    def as_dict(self) -> dict[str, Any]:
        return {
            "sends": self.sends,
            "discount": str(self.discount),
            "cost": {c: str(v) for c, v in self.cost.items()},
        }


def refusal(campaign: Campaign, today: Usage, total: Usage, channel: str, discount: Decimal) -> str:
    """Which budget one more send on ``channel`` worth ``discount`` would break, or ""."""
    if (
        campaign.budget_sends_per_day is not None
        and today.sends + 1 > campaign.budget_sends_per_day
    ):
        return "sends_per_day"
    if campaign.budget_sends_total is not None and total.sends + 1 > campaign.budget_sends_total:
        return "sends_total"
    if (
        campaign.budget_discount is not None
        and total.discount + discount > campaign.budget_discount
    ):
        return "discount"
    cap = (campaign.budget_channel_costs or {}).get(channel)
    if cap not in (None, "") and total.cost.get(channel, Decimal(0)) + cost_per_message(
        channel
    ) > Decimal(str(cap)):
        return f"cost_{channel}"
    return ""


def has_budget(campaign: Campaign) -> bool:
    """Whether any budget or cost cap limits the campaign's sends."""
    return any(
        limit is not None
        for limit in (
            campaign.budget_sends_per_day,
            campaign.budget_sends_total,
            campaign.budget_discount,
        )
    ) or any(cap not in (None, "") for cap in (campaign.budget_channel_costs or {}).values())


class BudgetLedger:
    """A campaign's spend for the current transaction: charge sends, then ``save``.

    A budgeted campaign's rows are locked at the first charge (not before: the lock lasts
    to the commit, and every event of the campaign waits for it). A campaign without any
    budget takes no lock: nothing can be refused, so its usage is added after the commit
    (``add_usage``), one upsert that waits for no open transaction.
    """

    def __init__(self, campaign: Campaign, now: datetime):
        self.campaign = campaign
        self.day = store_day(campaign, now)
        self.limited = has_budget(campaign)
        self.rows: dict[date, CampaignSpend] = {}
        self.total = Usage.of(None)
        self.today = Usage.of(None)

    def lock(self) -> None:
        days = [TOTAL_DAY, self.day]
        # Ordered by day, so two ledgers of one campaign always lock in the same order.
        locked = CampaignSpend.objects.select_for_update().filter(
            campaign=self.campaign, day__in=days
        )
        self.rows = {row.day: row for row in locked.order_by("day")}
        if len(self.rows) < len(days):
            # Only a campaign's first send of the day: an INSERT … ON CONFLICT on a row
            # another transaction is updating waits for that transaction, like the lock.
            CampaignSpend.objects.bulk_create(
                [CampaignSpend(campaign=self.campaign, day=d) for d in days], ignore_conflicts=True
            )
            self.rows = {row.day: row for row in locked.order_by("day")}
        self.total = Usage.of(self.rows[TOTAL_DAY])
        self.today = Usage.of(self.rows[self.day])

    def charge(self, channel: str, discount: Decimal) -> str:
        """Charge one send: "" if it fits, else ``budget_exhausted:<which>`` (not charged)."""
        if self.limited and not self.rows:
            self.lock()
        which = refusal(self.campaign, self.today, self.total, channel, discount)
        if which:
            BUDGET_EXHAUSTED.labels(which=which).inc()
            logger.info("campaign_budget_exhausted", campaign_id=self.campaign.pk, which=which)
            return f"budget_exhausted:{which}"
        price = cost_per_message(channel) if channel in COSTED_CHANNELS else Decimal(0)
        for usage in (self.today, self.total):
            usage.sends += 1
            usage.discount += discount
            if channel in COSTED_CHANNELS:
                usage.cost[channel] = usage.cost.get(channel, Decimal(0)) + price
        return ""

    def save(self) -> None:
        if self.rows:
            for day, usage in ((TOTAL_DAY, self.total), (self.day, self.today)):
                row = self.rows[day]
                row.sends, row.discount = usage.sends, usage.discount
                for channel in COSTED_CHANNELS:
                    setattr(row, f"cost_{channel}", usage.cost.get(channel, Decimal(0)))
                row.save()
        elif self.today.sends:
            # Robust: the sends are committed; a lost count only understates usage shown.
            transaction.on_commit(
                partial(add_usage, self.campaign, self.day, self.today), robust=True
            )


def add_usage(campaign: Campaign, day: date, usage: Usage) -> None:
    """Add an unbudgeted campaign's committed sends to its day and total rows: one upsert.

    Committed asynchronously: the row stays locked until the commit returns, and waiting for
    the WAL flush there (tens of ms on a busy disk) would have the campaign's events take
    turns again. A crash may lose the last counts (usage shown low), never a send.
    """
    costs = [usage.cost.get(channel, Decimal(0)) for channel in COSTED_CHANNELS]
    # In day order, as the ledger locks them, so the two never deadlock.
    rows: list[Any] = [
        value
        for row_day in sorted([TOTAL_DAY, day])
        for value in (campaign.pk, row_day, usage.sends, usage.discount, *costs)
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")
        cursor.execute(
            """INSERT INTO campaigns_campaignspend AS spend
                    (campaign_id, day, sends, discount, cost_email, cost_sms, cost_push)
                VALUES (%s, %s, %s, %s, %s, %s, %s), (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (campaign_id, day) DO UPDATE SET
                    sends = spend.sends + EXCLUDED.sends,
                    discount = spend.discount + EXCLUDED.discount,
                    cost_email = spend.cost_email + EXCLUDED.cost_email,
                    cost_sms = spend.cost_sms + EXCLUDED.cost_sms,
                    cost_push = spend.cost_push + EXCLUDED.cost_push""",
            rows,
        )


def budget_status(campaign: Campaign, now: datetime) -> dict[str, Any]:
    """Usage today and in total, and which budgets are exhausted (for the API and admin).

    Reads ``campaign.spend.all()``, so a list prefetches the rows instead of a query each.
    """
    today_day = store_day(campaign, now)
    rows = {row.day: row for row in campaign.spend.all() if row.day in (TOTAL_DAY, today_day)}
    total = Usage.of(rows.get(TOTAL_DAY))
    today = Usage.of(rows.get(today_day))
    exhausted = sorted(
        {
            which
            for channel in COSTED_CHANNELS
            if (which := refusal(campaign, today, total, channel, Decimal(0)))
        }
    )
    return {
        "today": today.as_dict(),
        "total": total.as_dict(),
        "exhausted": [f"budget_exhausted:{which}" for which in exhausted],
    }


def check_channel_costs(value: Any) -> dict[str, str]:
    """``budget_channel_costs`` in its stored shape, or ``ValueError(field, message)``."""
    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("budget_channel_costs", "Must be an object of channel: amount.")
    clean = {}
    for channel, amount in value.items():
        if channel not in COSTED_CHANNELS:
            raise ValueError(
                f"budget_channel_costs.{channel}",
                f"Must be one of {', '.join(COSTED_CHANNELS)}.",
            )
        try:
            number = Decimal(str(amount))
        except ArithmeticError:
            number = Decimal(-1)
        if isinstance(amount, bool) or not number.is_finite() or number < 0:
            raise ValueError(f"budget_channel_costs.{channel}", "Must be an amount ≥ 0.")
        clean[channel] = str(number)
    return clean

"""Whether, when, how and where to intervene: pure functions over plain data.

No database, no HTTP, no Celery: ``interventions.actions`` gathers the facts into these
dataclasses, calls ``decide`` and stores the ``Decision`` with its reasons on the
intervention, so every outcome can be explained ("suppressed: frequency cap 1/hour,
last sent 14:02") and replayed in a test table.

Rules, in order (docs/decisions.md):
1. a converted cart gets nothing;
2. automated only: the prediction's probability of conversion must reach the store's
   threshold (a cart nobody expects to recover is not worth a discount), and its
   recommended action must not be "none";
3. channel: the requested one, or for ``auto`` the live WebSocket first, then the
   shopper's preferences, then the store's fallback chain; opted-out, suppressed and
   unreachable channels are skipped (always, explicit triggers included);
4. automated only: frequency caps, per shopper per hour across channels and per
   channel per day;
5. quiet hours in the shopper's time zone (else the store's) move email, SMS and push
   to the end of the quiet window; an on-site WebSocket message is not delayed.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ALL_CHANNELS = ("websocket", "email", "sms", "push")
QUIET_HOURS_CHANNELS = frozenset({"email", "sms", "push"})
# Counts toward frequency caps: anything that was or will be sent.
CAPPED_STATUSES = frozenset({"scheduled", "queued", "sending", "sent", "unconfirmed", "delivered"})


@dataclass(frozen=True)
class StoreRules:
    timezone: str = "UTC"
    probability_threshold: float = 0.3
    quiet_hours_start: time | None = time(21, 0)
    quiet_hours_end: time | None = time(8, 0)
    frequency_cap_per_hour: int = 1
    channel_caps_per_day: Mapping[str, int] = field(default_factory=dict)
    fallback_chain: Sequence[str] = ("websocket", "push", "email", "sms")


@dataclass(frozen=True)
class ShopperFacts:
    timezone: str = ""
    segment: str = ""
    channel_preferences: Sequence[str] = ()
    opted_out_channels: frozenset[str] = frozenset()
    suppressed_channels: frozenset[str] = frozenset()  # the address on it is suppressed
    reachable_channels: frozenset[str] = frozenset({"websocket"})  # an address is known
    connected: bool = False  # a live WebSocket right now


@dataclass(frozen=True)
class CartFacts:
    value: Decimal | None = None
    converted: bool = False
    probability: float | None = None
    recommended_action: str = ""
    recommended_discount: Decimal | None = None


@dataclass(frozen=True)
class PastIntervention:
    channel: str
    status: str
    at: datetime


@dataclass(frozen=True)
class CampaignRule:
    id: int
    name: str
    trigger: str
    channel: str  # email | sms | push | websocket | all
    delay_minutes: int = 0
    template_key: str = ""
    priority: int = 0
    min_cart_value: Decimal | None = None
    max_cart_value: Decimal | None = None
    segments: Sequence[str] = ()
    min_probability: float | None = None
    max_probability: float | None = None


@dataclass(frozen=True)
class Request:
    """What is asked for: an explicit trigger, or a campaign firing on an event."""

    channel: str  # websocket | email | sms | push | auto
    explicit: bool
    template_key: str = ""
    send_at: datetime | None = None  # None: now (plus the campaign's delay)
    delay_minutes: int = 0


@dataclass(frozen=True)
class Decision:
    intervene: bool
    status: str  # queued | scheduled | suppressed
    channel: str | None
    fallback_channels: tuple[str, ...]
    send_at: datetime
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "intervene": self.intervene,
            "status": self.status,
            "channel": self.channel,
            "fallback_channels": list(self.fallback_channels),
            "send_at": self.send_at.isoformat(),
            "reasons": list(self.reasons),
        }


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _hhmm(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M")


def in_quiet_hours(local: time, start: time, end: time) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end  # the window crosses midnight


def next_allowed_moment(
    moment: datetime, zone_name: str, start: time | None, end: time | None
) -> datetime:
    """``moment`` if outside quiet hours in ``zone_name``, else the end of the quiet window.

    Works in wall-clock time, so the window keeps its local meaning across DST changes.
    An end time that occurs twice (fall back) ends the window at its first occurrence.
    """
    if start is None or end is None:
        return moment
    zone = _zone(zone_name)
    local = moment.astimezone(zone)
    if not in_quiet_hours(local.time().replace(tzinfo=None), start, end):
        return moment
    end_date = local.date()
    if local.time().replace(tzinfo=None) >= end and start > end:
        end_date += timedelta(days=1)
    wall = datetime.combine(end_date, end)
    first = wall.replace(tzinfo=zone).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) != wall:
        # The end time falls into a spring-forward gap: the window ends when the clock
        # jumps past it, the first instant whose wall time is at or after ``wall``.
        instant = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        while instant.astimezone(zone).replace(tzinfo=None) < wall:
            instant += timedelta(minutes=1)
        first = instant
    return first


def campaign_matches(
    rule: CampaignRule, cart: CartFacts, shopper: ShopperFacts
) -> tuple[bool, str]:
    """Whether the campaign's conditions hold, and why not when they do not."""
    if rule.min_cart_value is not None and (cart.value is None or cart.value < rule.min_cart_value):
        return False, f"cart value {cart.value} under campaign minimum {rule.min_cart_value}"
    if rule.max_cart_value is not None and (cart.value is None or cart.value > rule.max_cart_value):
        return False, f"cart value {cart.value} over campaign maximum {rule.max_cart_value}"
    if rule.segments and shopper.segment not in rule.segments:
        return False, f"segment {shopper.segment or '(none)'} not in {', '.join(rule.segments)}"
    if rule.min_probability is not None and (
        cart.probability is None or cart.probability < rule.min_probability
    ):
        return (
            False,
            f"probability {cart.probability} under campaign minimum {rule.min_probability}",
        )
    if rule.max_probability is not None and (
        cart.probability is None or cart.probability > rule.max_probability
    ):
        return False, f"probability {cart.probability} over campaign maximum {rule.max_probability}"
    return True, ""


def choose_campaign(
    rules: Sequence[CampaignRule], triggers: Collection[str], cart: CartFacts, shopper: ShopperFacts
) -> tuple[CampaignRule | None, list[str]]:
    """The highest-priority campaign for one of ``triggers`` whose conditions hold."""
    reasons: list[str] = []
    for rule in sorted(rules, key=lambda r: (-r.priority, r.id)):
        if rule.trigger not in triggers:
            continue
        matches, why_not = campaign_matches(rule, cart, shopper)
        if matches:
            return rule, [f"campaign '{rule.name}' matched"]
        reasons.append(f"campaign '{rule.name}' skipped: {why_not}")
    if not reasons:
        reasons.append(f"no active campaign for {' or '.join(sorted(triggers))}")
    return None, reasons


def channel_candidates(requested: str, shopper: ShopperFacts, rules: StoreRules) -> list[str]:
    if requested != "auto":
        return [requested]
    ordered: list[str] = ["websocket"] if shopper.connected else []
    for channel in (*shopper.channel_preferences, *rules.fallback_chain):
        if channel not in ordered and (channel != "websocket" or shopper.connected):
            ordered.append(channel)
    # An offline shopper still gets the on-site message on their next visit,
    # as the last resort of the chain.
    if "websocket" not in ordered and "websocket" in rules.fallback_chain:
        ordered.append("websocket")
    return ordered


def _usable(channel: str, shopper: ShopperFacts) -> str:
    """Empty when the channel can be used, else why not."""
    if channel in shopper.opted_out_channels:
        return f"{channel}: shopper opted out"
    if channel in shopper.suppressed_channels:
        return f"{channel}: address on the suppression list"
    if channel not in shopper.reachable_channels:
        return f"{channel}: no address known"
    return ""


def _frequency_blocks(
    channels: list[str], history: Sequence[PastIntervention], rules: StoreRules, now: datetime
) -> tuple[str | None, dict[str, str]]:
    """(reason the shopper is capped overall, {channel: reason it is capped})."""
    counted = [p for p in history if p.status in CAPPED_STATUSES]
    last_hour = sorted((p.at for p in counted if p.at > now - timedelta(hours=1)), reverse=True)
    overall = None
    if rules.frequency_cap_per_hour and len(last_hour) >= rules.frequency_cap_per_hour:
        overall = (
            f"frequency cap {rules.frequency_cap_per_hour}/hour, "
            f"last sent {last_hour[0].astimezone(_zone(rules.timezone)):%H:%M}"
        )
    per_channel: dict[str, str] = {}
    day_ago = now - timedelta(days=1)
    for channel in channels:
        cap = rules.channel_caps_per_day.get(channel)
        if cap is None:
            continue
        used = sum(1 for p in counted if p.channel == channel and p.at > day_ago)
        if used >= cap:
            per_channel[channel] = f"{channel}: channel cap {cap}/day reached"
    return overall, per_channel


def decide(  # noqa: C901 - the rules in docs/decisions.md order, read top to bottom (hence its length)
    request: Request,
    shopper: ShopperFacts,
    cart: CartFacts,
    rules: StoreRules,
    history: Sequence[PastIntervention],
    now: datetime,
) -> Decision:
    reasons: list[str] = []

    def suppressed(reason: str) -> Decision:
        return Decision(False, "suppressed", None, (), now, (*reasons, f"suppressed: {reason}"))

    if cart.converted:
        return suppressed("cart already converted")

    if not request.explicit:
        if cart.recommended_action == "none":
            return suppressed("prediction recommends no action")
        if cart.probability is not None:
            if cart.probability < rules.probability_threshold:
                return suppressed(
                    f"probability {cart.probability:.2f} below threshold "
                    f"{rules.probability_threshold:.2f}"
                )
            reasons.append(
                f"probability {cart.probability:.2f} meets threshold {rules.probability_threshold:.2f}"
            )
    else:
        reasons.append(
            "explicit trigger: threshold, campaign conditions and frequency caps skipped"
        )

    usable: list[str] = []
    for channel in channel_candidates(request.channel, shopper, rules):
        why_not = _usable(channel, shopper)
        if why_not:
            reasons.append(why_not)
        else:
            usable.append(channel)

    if not request.explicit:
        overall, per_channel = _frequency_blocks(usable, history, rules, now)
        if overall:
            return suppressed(overall)
        for channel, why in per_channel.items():
            reasons.append(why)
            usable.remove(channel)

    if not usable:
        return suppressed("no usable channel")

    channel, fallbacks = usable[0], tuple(usable[1:])
    if request.channel == "auto":
        reasons.append(
            f"channel {channel} chosen"
            + (" (shopper on site)" if channel == "websocket" and shopper.connected else "")
        )

    send_at = request.send_at or now + timedelta(minutes=request.delay_minutes)
    send_at = max(send_at, now)
    if channel in QUIET_HOURS_CHANNELS:
        zone_name = shopper.timezone or rules.timezone
        allowed = next_allowed_moment(
            send_at, zone_name, rules.quiet_hours_start, rules.quiet_hours_end
        )
        if allowed != send_at:
            zone = _zone(zone_name)
            reasons.append(
                f"quiet hours {rules.quiet_hours_start:%H:%M}-{rules.quiet_hours_end:%H:%M} "
                f"in {zone_name}: moved from {_hhmm(send_at, zone)} to {allowed.astimezone(zone):%Y-%m-%d %H:%M}"
            )
            send_at = allowed

    status = "scheduled" if send_at > now else "queued"
    return Decision(True, status, channel, fallbacks, send_at, tuple(reasons))

"""The decision rules, as tables: no database, no HTTP."""

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest

from interventions.decisions import (
    CampaignRule,
    CartFacts,
    PastIntervention,
    Request,
    ShopperFacts,
    StoreRules,
    choose_campaign,
    decide,
    next_allowed_moment,
)

NOON = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
RULES = StoreRules(timezone="UTC", quiet_hours_start=time(21), quiet_hours_end=time(8))
REACHABLE = ShopperFacts(reachable_channels=frozenset({"websocket", "email", "sms", "push"}))
AUTOMATED_EMAIL = Request(channel="email", explicit=False)
NO_CART = CartFacts()


def decide_now(
    request=AUTOMATED_EMAIL, shopper=REACHABLE, cart=NO_CART, rules=RULES, history=(), now=NOON
):
    return decide(request, shopper, cart, rules, history, now)


@pytest.mark.parametrize(
    ("probability", "action", "intervenes", "reason"),
    [
        (0.29, "discount", False, "suppressed: probability 0.29 below threshold 0.30"),
        (0.30, "discount", True, "probability 0.30 meets threshold 0.30"),
        (0.90, "reminder", True, "probability 0.90 meets threshold 0.30"),
        (0.90, "none", False, "suppressed: prediction recommends no action"),
        (None, "", True, None),
    ],
)
def test_probability_threshold(probability, action, intervenes, reason):
    decision = decide_now(cart=CartFacts(probability=probability, recommended_action=action))

    assert decision.intervene is intervenes
    if reason:
        assert reason in decision.reasons


def test_explicit_trigger_skips_threshold_and_caps():
    history = [PastIntervention("email", "sent", NOON - timedelta(minutes=5))]

    decision = decide_now(
        request=Request(channel="email", explicit=True),
        cart=CartFacts(probability=0.01),
        history=history,
    )

    assert decision.intervene
    assert decision.channel == "email"


def test_converted_cart_is_never_intervened_even_explicitly():
    decision = decide_now(
        request=Request(channel="email", explicit=True), cart=CartFacts(converted=True)
    )

    assert decision.reasons[-1] == "suppressed: cart already converted"


@pytest.mark.parametrize(
    ("shopper", "reason"),
    [
        (
            ShopperFacts(
                opted_out_channels=frozenset({"email"}), reachable_channels=frozenset({"email"})
            ),
            "email: shopper opted out",
        ),
        (
            ShopperFacts(
                suppressed_channels=frozenset({"email"}), reachable_channels=frozenset({"email"})
            ),
            "email: address on the suppression list",
        ),
        (ShopperFacts(reachable_channels=frozenset({"websocket"})), "email: no address known"),
    ],
)
def test_opt_outs_and_suppressions_bind_explicit_triggers_too(shopper, reason):
    decision = decide_now(request=Request(channel="email", explicit=True), shopper=shopper)

    assert not decision.intervene
    assert reason in decision.reasons
    assert decision.reasons[-1] == "suppressed: no usable channel"


def test_frequency_cap_names_the_last_send():
    history = [PastIntervention("sms", "sent", datetime(2026, 6, 10, 11, 32, tzinfo=UTC))]

    decision = decide_now(history=history)

    assert decision.reasons[-1] == "suppressed: frequency cap 1/hour, last sent 11:32"


@pytest.mark.parametrize(
    ("status", "minutes_ago", "capped"),
    [
        ("sent", 59, True),
        ("sent", 61, False),
        ("suppressed", 5, False),
        ("cancelled", 5, False),
        ("scheduled", 5, True),
    ],
)
def test_frequency_cap_counts_only_what_went_or_will_go_out(status, minutes_ago, capped):
    history = [PastIntervention("email", status, NOON - timedelta(minutes=minutes_ago))]

    assert decide_now(history=history).intervene is not capped


def test_channel_cap_per_day_moves_auto_to_the_next_channel():
    rules = StoreRules(
        channel_caps_per_day={"push": 1}, fallback_chain=("push", "email"), frequency_cap_per_hour=5
    )
    history = [PastIntervention("push", "delivered", NOON - timedelta(hours=3))]

    decision = decide_now(
        request=Request(channel="auto", explicit=False), rules=rules, history=history
    )

    assert decision.channel == "email"
    assert "push: channel cap 1/day reached" in decision.reasons


@pytest.mark.parametrize(
    ("connected", "preferences", "opted_out", "expected", "fallbacks"),
    [
        (True, ("sms",), (), "websocket", ("sms", "push", "email")),
        (False, ("sms",), (), "sms", ("push", "email", "websocket")),
        (False, ("sms", "email"), ("sms",), "email", ("push", "websocket")),
        (False, (), ("push", "email", "sms"), "websocket", ()),
    ],
)
def test_auto_channel_order(connected, preferences, opted_out, expected, fallbacks):
    shopper = ShopperFacts(
        channel_preferences=preferences,
        opted_out_channels=frozenset(opted_out),
        reachable_channels=frozenset({"websocket", "email", "sms", "push"}),
        connected=connected,
    )

    decision = decide_now(request=Request(channel="auto", explicit=True), shopper=shopper)

    assert (decision.channel, decision.fallback_channels) == (expected, fallbacks)


@pytest.mark.parametrize(
    ("now", "zone", "channel", "expected_send_at"),
    [
        # 23:00 in Paris (summer, UTC+2) → 08:00 next morning Paris = 06:00 UTC.
        (
            datetime(2026, 6, 10, 21, 0, tzinfo=UTC),
            "Europe/Paris",
            "email",
            datetime(2026, 6, 11, 6, 0, tzinfo=UTC),
        ),
        # 03:00 in New York (UTC-4) → 08:00 the same day = 12:00 UTC.
        (
            datetime(2026, 6, 10, 7, 0, tzinfo=UTC),
            "America/New_York",
            "sms",
            datetime(2026, 6, 10, 12, 0, tzinfo=UTC),
        ),
        # 14:00 in Tokyo is outside quiet hours: sent now.
        (
            datetime(2026, 6, 10, 5, 0, tzinfo=UTC),
            "Asia/Tokyo",
            "push",
            datetime(2026, 6, 10, 5, 0, tzinfo=UTC),
        ),
        # An on-site message is not delayed by quiet hours.
        (
            datetime(2026, 6, 10, 21, 0, tzinfo=UTC),
            "Europe/Paris",
            "websocket",
            datetime(2026, 6, 10, 21, 0, tzinfo=UTC),
        ),
    ],
)
def test_quiet_hours_move_the_send_in_the_shoppers_timezone(now, zone, channel, expected_send_at):
    shopper = ShopperFacts(
        timezone=zone, reachable_channels=frozenset({"websocket", "email", "sms", "push"})
    )

    decision = decide_now(request=Request(channel=channel, explicit=True), shopper=shopper, now=now)

    assert decision.send_at == expected_send_at
    assert decision.status == ("scheduled" if expected_send_at > now else "queued")


def test_quiet_hours_fall_back_to_the_store_timezone():
    rules = StoreRules(timezone="Asia/Tokyo", quiet_hours_start=time(21), quiet_hours_end=time(8))
    now = datetime(2026, 6, 10, 13, 0, tzinfo=UTC)  # 22:00 in Tokyo

    decision = decide_now(request=Request(channel="email", explicit=True), rules=rules, now=now)

    assert decision.send_at == datetime(2026, 6, 10, 23, 0, tzinfo=UTC)  # 08:00 Tokyo
    assert any("quiet hours 21:00-08:00 in Asia/Tokyo" in r for r in decision.reasons)


@pytest.mark.parametrize(
    ("moment", "end", "expected"),
    [
        # Spring forward in Paris, 2026-03-29: 02:00 → 03:00. A window ending at 02:30
        # ends when the clock jumps, 03:00 CEST = 01:00 UTC.
        (
            datetime(2026, 3, 29, 0, 0, tzinfo=UTC),
            time(2, 30),
            datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
        ),
        # Ending at 08:00 on that day is 08:00 CEST = 06:00 UTC (not 07:00).
        (datetime(2026, 3, 29, 0, 0, tzinfo=UTC), time(8), datetime(2026, 3, 29, 6, 0, tzinfo=UTC)),
        # Fall back, 2026-10-25: 03:00 → 02:00. 02:30 happens twice; the first one ends it.
        (
            datetime(2026, 10, 24, 23, 0, tzinfo=UTC),
            time(2, 30),
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        ),
        # 08:00 after the change is 08:00 CET = 07:00 UTC.
        (
            datetime(2026, 10, 24, 23, 0, tzinfo=UTC),
            time(8),
            datetime(2026, 10, 25, 7, 0, tzinfo=UTC),
        ),
    ],
)
def test_quiet_hours_across_dst_changes(moment, end, expected):
    assert next_allowed_moment(moment, "Europe/Paris", time(21), end) == expected


def test_quiet_window_that_does_not_cross_midnight():
    lunch = next_allowed_moment(
        datetime(2026, 6, 10, 12, 30, tzinfo=UTC), "UTC", time(12), time(14)
    )

    assert lunch == datetime(2026, 6, 10, 14, 0, tzinfo=UTC)


def test_scheduled_request_keeps_its_time_and_campaign_delay_adds_up():
    later = NOON + timedelta(hours=2)

    assert (
        decide_now(request=Request(channel="websocket", explicit=True, send_at=later)).send_at
        == later
    )
    delayed = decide_now(request=Request(channel="websocket", explicit=False, delay_minutes=30))
    assert (delayed.status, delayed.send_at) == ("scheduled", NOON + timedelta(minutes=30))


CAMPAIGNS = [
    CampaignRule(
        id=1,
        name="big carts",
        trigger="cart_abandoned",
        channel="email",
        priority=10,
        min_cart_value=Decimal("100"),
    ),
    CampaignRule(
        id=2, name="vip", trigger="cart_abandoned", channel="sms", priority=5, segments=("vip",)
    ),
    CampaignRule(id=3, name="everyone", trigger="cart_abandoned", channel="all"),
    CampaignRule(
        id=4, name="likely", trigger="prediction_high", channel="push", min_probability=0.5
    ),
]


@pytest.mark.parametrize(
    ("triggers", "value", "segment", "probability", "expected"),
    [
        (("cart_abandoned",), Decimal("150"), "", None, "big carts"),
        (("cart_abandoned",), Decimal("50"), "vip", None, "vip"),
        (("cart_abandoned",), Decimal("50"), "", None, "everyone"),
        (("prediction_high",), None, "", 0.7, "likely"),
        (("prediction_high",), None, "", 0.4, None),
    ],
)
def test_campaign_choice_by_priority_and_conditions(
    triggers, value, segment, probability, expected
):
    rule, reasons = choose_campaign(
        CAMPAIGNS,
        triggers,
        CartFacts(value=value, probability=probability),
        ShopperFacts(segment=segment),
    )

    assert (rule.name if rule else None) == expected
    if expected is None:
        assert reasons == ["campaign 'likely' skipped: probability 0.4 under campaign minimum 0.5"]

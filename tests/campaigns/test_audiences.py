"""Audience rules: one validation, and the SQL and in-memory evaluators agree."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.audiences import audience_carts, check_audience, facts_for, matches
from campaigns.models import Campaign, CampaignStatus
from interventions.models import Cart, Intervention, Status
from notifications.models import Device, Suppression
from stores.models import Shopper

pytestmark = pytest.mark.django_db


def shopper(shop, external_id, **fields):
    return Shopper.objects.create(store=shop.store, external_id=external_id, **fields)


def cart(shop, owner, external_id, now, **fields):
    return Cart.objects.create(store=shop.store, shopper=owner, external_id=external_id, **fields)


@pytest.fixture
def population(shop):
    """A dozen carts that differ in every way a rule can ask about."""
    now = timezone.now()
    people = {
        "ann": shopper(shop, "ann", email="ann@example.test", locale="fr-FR", country="FR",
                       segment="vip"),
        "bob": shopper(shop, "bob", phone="+33612345678", locale="en-GB", country="GB"),
        "cyd": shopper(shop, "cyd", email="cyd@example.test", country="DE", segment="new",
                       opted_out_channels=["email"]),
        "dee": shopper(shop, "dee", email="dee@example.test", locale="de-DE", country="DE"),
        "eve": shopper(shop, "eve", locale="fr-FR", country="FR", segment="vip"),
        "fay": shopper(shop, "fay", email="fay@example.test", phone="+33600000000"),
    }  # fmt: skip
    Suppression.objects.create(
        store=shop.store, channel="email", address="dee@example.test", reason="bounce"
    )
    Device.objects.create(store=shop.store, shopper=people["eve"], token="tok-eve", platform="ios")
    rows = [
        ("ann", "a1", {"value": Decimal("120.00"), "currency": "EUR", "abandoned_at": now - timedelta(hours=3),
                       "items": [{"sku": "TENT-1", "category": "tents"}, {"sku": "MAT-2", "category": "mats"}],
                       "probability": 0.2}),
        ("ann", "a2", {"value": Decimal("30.00"), "currency": "EUR", "abandoned_at": now - timedelta(hours=30),
                       "converted_at": now - timedelta(days=2)}),
        ("bob", "b1", {"value": Decimal("55.50"), "currency": "GBP", "abandoned_at": now - timedelta(hours=1, minutes=30),
                       "items": [{"sku": "BOOT-9", "category": "boots"}], "probability": 0.6}),
        ("cyd", "c1", {"value": Decimal("49.99"), "currency": "EUR", "abandoned_at": now - timedelta(minutes=20),
                       "items": [{"sku": "TENT-1", "category": "tents"}]}),
        ("dee", "d1", {"value": None, "currency": "EUR", "items": []}),
        ("eve", "e1", {"value": Decimal("200.00"), "currency": "EUR", "abandoned_at": now - timedelta(hours=23),
                       "items": [{"sku": "MAT-2", "category": "mats"}] * 3, "probability": 0.05}),
        ("fay", "f1", {"value": Decimal("75.00"), "currency": "EUR", "abandoned_at": now - timedelta(days=3),
                       "probability": 0.9}),
    ]  # fmt: skip
    carts = {ext: cart(shop, people[who], ext, now, **fields) for who, ext, fields in rows}
    for n, who in enumerate(["ann", "ann", "bob"]):
        Intervention.objects.create(
            store=shop.store,
            shopper=people[who],
            requested_channel="email",
            channel="email",
            status=Status.SENT,
            sent_at=now - timedelta(days=2 + n * 5),
        )
    return carts


RULES = [
    {"match": "all", "conditions": [{"field": "cart.value", "op": "gte", "value": 50}]},
    {"match": "all", "conditions": [{"field": "cart.value", "op": "ne", "value": "49.99"}]},
    {"conditions": [{"field": "cart.value", "op": "between", "value": [49.99, 120]}]},
    {"conditions": [{"field": "cart.abandoned_hours", "op": "between", "value": [1, 24]}]},
    {"conditions": [{"field": "cart.abandoned_hours", "op": "lt", "value": 2}]},
    {"conditions": [{"field": "cart.age_hours", "op": "lte", "value": 1}]},
    {"conditions": [{"field": "cart.converted", "op": "eq", "value": False}]},
    {"conditions": [{"field": "cart.converted", "op": "eq", "value": True}]},
    {"conditions": [{"field": "cart.items_count", "op": "gte", "value": 2}]},
    {"conditions": [{"field": "cart.items_count", "op": "eq", "value": 0}]},
    {"conditions": [{"field": "cart.skus", "op": "any_of", "value": ["TENT-1", "BOOT-9"]}]},
    {"conditions": [{"field": "cart.categories", "op": "none_of", "value": ["tents"]}]},
    {"conditions": [{"field": "cart.probability", "op": "lt", "value": 0.3}]},
    {"conditions": [{"field": "cart.probability", "op": "ne", "value": 0.6}]},
    {"conditions": [{"field": "cart.currency", "op": "in", "value": ["GBP"]}]},
    {"conditions": [{"field": "shopper.locale", "op": "eq", "value": "fr-FR"}]},
    {"conditions": [{"field": "shopper.country", "op": "not_in", "value": ["FR", "GB"]}]},
    {"conditions": [{"field": "shopper.segment", "op": "ne", "value": "vip"}]},
    {"conditions": [{"field": "shopper.interventions", "op": "eq", "value": 0, "days": 7}]},
    {"conditions": [{"field": "shopper.interventions", "op": "gte", "value": 2, "days": 30}]},
    {"conditions": [{"field": "shopper.conversions", "op": "gt", "value": 0, "days": 7}]},
    {"conditions": [{"field": "shopper.reachable", "op": "any_of", "value": ["email"]}]},
    {"conditions": [{"field": "shopper.reachable", "op": "any_of", "value": ["sms", "push"]}]},
    {"conditions": [{"field": "shopper.reachable", "op": "none_of", "value": ["email", "sms"]}]},
    {
        "match": "any",
        "conditions": [
            {"field": "shopper.country", "op": "eq", "value": "DE"},
            {
                "match": "all",
                "conditions": [
                    {"field": "cart.value", "op": "gte", "value": 100},
                    {"field": "cart.converted", "op": "eq", "value": False},
                ],
            },
        ],
    },
    {
        "match": "all",
        "conditions": [
            {"field": "cart.abandoned_hours", "op": "between", "value": [1, 24]},
            {"field": "cart.converted", "op": "eq", "value": False},
            {"field": "cart.value", "op": "gte", "value": 50},
        ],
    },
]


@pytest.mark.parametrize("rule", RULES, ids=[str(i) for i in range(len(RULES))])
def test_sql_and_in_memory_evaluators_select_the_same_carts(shop, population, rule):
    # Given a population of carts and one rule, checked as valid
    rule = check_audience(rule)
    now = timezone.now()

    # When both evaluators judge it
    in_sql = set(audience_carts(shop.store, rule, now).values_list("external_id", flat=True))
    in_memory = {
        ext
        for ext, row in population.items()
        if matches(rule, facts_for(row, row.shopper, rule, now), now)
    }

    # Then they agree, and the rule is not trivially all or nothing for every case
    assert in_sql == in_memory


def test_the_abandoned_day_rule_selects_what_a_marketer_means(shop, population):
    rule = check_audience(RULES[-1])

    selected = set(
        audience_carts(shop.store, rule, timezone.now()).values_list("external_id", flat=True)
    )

    # a1: 3 h, 120 EUR; b1: 1.5 h, 55.50; e1: 23 h, 200. Not c1 (20 min), f1 (3 days), a2 (converted).
    assert selected == {"a1", "b1", "e1"}


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ("everyone", "audience"),
        ({"match": "some", "conditions": []}, "audience.match"),
        ({"conditions": []}, "audience.conditions"),
        ({"conditions": [{"field": "cart.colour", "op": "eq", "value": 1}]}, "audience.conditions.0.field"),
        ({"conditions": [{"field": "cart.value", "op": "in", "value": 1}]}, "audience.conditions.0.op"),
        ({"conditions": [{"field": "cart.value", "op": "gte", "value": "lots"}]}, "audience.conditions.0.value"),
        ({"conditions": [{"field": "cart.value", "op": "between", "value": [90, 10]}]}, "audience.conditions.0.value"),
        ({"conditions": [{"field": "shopper.reachable", "op": "any_of", "value": ["fax"]}]}, "audience.conditions.0.value"),
        ({"conditions": [{"field": "shopper.interventions", "op": "eq", "value": 0, "days": 0}]}, "audience.conditions.0.days"),
        ({"conditions": [{"field": "cart.value", "op": "gte", "value": 1, "days": 3}]}, "audience.conditions.0.days"),
        ({"conditions": [{"field": "cart.value", "op": "gte", "value": 1, "extra": 3}]}, "audience.conditions.0.extra"),
        ({"conditions": [{"conditions": [{"conditions": [{"conditions": []}]}]}]},
         "audience.conditions.0.conditions.0.conditions.0"),
    ],
)  # fmt: skip
def test_a_bad_rule_names_its_field(rule, field):
    with pytest.raises(ValidationError) as caught:
        check_audience(rule)

    assert list(caught.value.message_dict) == [field]


def test_the_api_refuses_a_bad_rule_with_a_400_naming_the_field(shop):
    response = shop.client.post(
        "/api/v1/campaigns",
        {
            "name": "Weekend",
            "trigger": "cart_abandoned",
            "channel": "email",
            "audience": {"conditions": [{"field": "cart.value", "op": "gte", "value": -5}]},
        },
        format="json",
    )

    assert response.status_code == 400
    assert "audience.conditions.0.value" in response.json()["error"]["fields"], response.json()


def test_audience_preview_counts_shoppers_and_samples_the_stores_own(shop, other_shop, population):
    # Given a campaign whose audience holds ann (a1, 120 EUR) and eve (e1, 200 EUR)
    campaign = Campaign.objects.create(
        store=shop.store,
        name="Big carts",
        trigger="cart_abandoned",
        channel="email",
        status=CampaignStatus.DRAFT,
        audience={"conditions": [{"field": "cart.value", "op": "gte", "value": 100}]},
    )

    # When the marketer previews it
    response = shop.client.get(f"/api/v1/campaigns/{campaign.pk}/audience-preview")

    # Then it counts shoppers (not carts) and names a few
    assert response.status_code == 200, response.content
    assert response.json()["size"] == 2
    assert response.json()["sample_shopper_ids"] == ["ann", "eve"]
    # and another store cannot see it
    assert (
        other_shop.client.get(f"/api/v1/campaigns/{campaign.pk}/audience-preview").status_code
        == 404
    )


def test_a_triggered_campaign_fires_only_for_carts_in_its_audience(shop):
    # Given a running triggered campaign for French shoppers only
    Campaign.objects.create(
        store=shop.store,
        name="Bonjour",
        trigger="cart_abandoned",
        channel="websocket",
        status=CampaignStatus.RUNNING,
        audience={"conditions": [{"field": "shopper.country", "op": "eq", "value": "FR"}]},
    )

    def abandon(user_id, country):
        response = shop.client.post(
            "/api/v1/events",
            {
                "type": "cart_abandoned",
                "cart_id": f"cart-{user_id}",
                "user_id": user_id,
                "user": {"country": country, "timezone": "UTC"},
                "cart": {"value": "80.00", "currency": "EUR"},
            },
            format="json",
        )
        assert response.status_code == 202, response.content
        return response.json()

    # When a French and a German shopper abandon their carts
    french, german = abandon("pierre", "FR"), abandon("hans", "DE")

    # Then only the French one gets an intervention, and the other answer says why
    assert len(french["interventions"]) == 1
    assert german["interventions"] == []
    assert any("not in its audience" in reason for reason in german["reasons"]), german

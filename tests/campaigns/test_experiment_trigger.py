"""Cart events in a campaign with variants: sticky arms, exposures, holdout, overrides."""

from datetime import UTC, datetime

import pytest

from campaigns.experiments.assignment import Arm, assign
from campaigns.models import Campaign, CampaignStatus, Exposure
from interventions.models import Intervention, Status
from templates import actions as template_actions

pytestmark = pytest.mark.django_db

SPLIT = [
    {"key": "control", "weight": 50},
    {"key": "ten_off", "weight": 50, "discount_percent": 10, "channel": "email"},
]


def running_campaign(shop, **fields):
    values = {
        "name": "Comeback",
        "trigger": "cart_abandoned",
        "channel": "websocket",
        "status": CampaignStatus.RUNNING,
        "variants": SPLIT,
        **fields,
    }
    return Campaign.objects.create(store=shop.store, **values)


def abandon(shop, user_id):
    response = shop.client.post(
        "/api/v1/events",
        {
            "type": "cart_abandoned",
            "cart_id": f"cart-{user_id}",
            "user_id": user_id,
            "user": {"email": f"{user_id}@example.test", "timezone": "UTC"},
            "cart": {"value": "80.00", "currency": "EUR"},
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    return response.json()


def expected_arm(campaign, user_id):
    arms = [Arm(v["key"], v["weight"]) for v in campaign.variants]
    return assign(str(campaign.pk), user_id, arms, campaign.holdout_percent)


def test_each_shopper_gets_the_hashed_arm_and_one_exposure(shop):
    campaign = running_campaign(shop)
    shoppers = [f"shopper-{n}" for n in range(12)]

    answers = {user_id: abandon(shop, user_id) for user_id in shoppers}

    for user_id, answer in answers.items():
        [outcome] = answer["interventions"]
        assert outcome["campaign"] == campaign.pk
        assert outcome["variant"] == expected_arm(campaign, user_id)
    exposures = dict(Exposure.objects.values_list("shopper__external_id", "arm"))
    assert exposures == {user_id: expected_arm(campaign, user_id) for user_id in shoppers}
    assert set(exposures.values()) == {"control", "ten_off"}


def test_arm_overrides_apply_to_the_intervention(shop):
    campaign = running_campaign(shop)
    shoppers = [f"shopper-{n}" for n in range(12)]
    treated = next(u for u in shoppers if expected_arm(campaign, u) == "ten_off")
    control = next(u for u in shoppers if expected_arm(campaign, u) == "control")

    abandon(shop, treated)
    abandon(shop, control)

    ten_off = Intervention.objects.get(shopper__external_id=treated)
    plain = Intervention.objects.get(shopper__external_id=control)
    assert (ten_off.variant, ten_off.channel, ten_off.decision["discount"]["percent"]) == (
        "ten_off",
        "email",
        "10",
    )
    assert (plain.variant, plain.channel, plain.decision["discount"]) == (
        "control",
        "websocket",
        None,
    )


def test_an_exposed_shopper_keeps_their_arm_when_the_split_changes(shop):
    campaign = running_campaign(shop)
    shoppers = [f"shopper-{n}" for n in range(12)]
    user_id = next(u for u in shoppers if expected_arm(campaign, u) == "control")
    abandon(shop, user_id)

    # Everyone new would now land in ten_off.
    campaign.variants = [{"key": "control", "weight": 0.001}, {"key": "ten_off", "weight": 99.999}]
    campaign.save()
    assert expected_arm(campaign, user_id) == "ten_off"
    second = abandon(shop, user_id)

    assert second["interventions"][0]["variant"] == "control"
    assert Exposure.objects.get(shopper__external_id=user_id).arm == "control"
    assert Exposure.objects.count() == 1


def test_holdout_shoppers_get_a_suppressed_intervention_explained_as_holdout(shop):
    campaign = running_campaign(shop, holdout_percent=50)
    shoppers = [f"shopper-{n}" for n in range(20)]
    held = [u for u in shoppers if expected_arm(campaign, u) == "holdout"]
    assert held, "the hash puts some of 20 shoppers in a 50% holdout"

    for user_id in shoppers:
        abandon(shop, user_id)

    for user_id in shoppers:
        intervention = Intervention.objects.get(shopper__external_id=user_id)
        if user_id in held:
            assert intervention.status == Status.SUPPRESSED
            assert intervention.status_reason == "suppressed: holdout"
            assert intervention.variant == "holdout"
        else:
            assert intervention.status != Status.SUPPRESSED
    assert Exposure.objects.filter(arm="holdout").count() == len(held)


def test_campaign_without_variants_records_no_exposure(shop):
    Campaign.objects.create(
        store=shop.store, name="Plain", trigger="cart_abandoned", channel="websocket"
    )

    [outcome] = abandon(shop, "sam")["interventions"]

    assert outcome["variant"] == ""
    assert not Exposure.objects.exists()


def test_a_paused_campaign_does_not_fire(shop):
    running_campaign(shop, status=CampaignStatus.PAUSED)

    assert abandon(shop, "sam")["interventions"] == []


def test_a_campaign_past_its_end_does_not_fire(shop):
    running_campaign(shop, ends_at=datetime(2001, 1, 1, tzinfo=UTC))

    assert abandon(shop, "sam")["interventions"] == []


def test_the_intervention_api_shows_campaign_and_variant(shop):
    campaign = running_campaign(shop)
    [outcome] = abandon(shop, "sam")["interventions"]

    shown = shop.client.get(f"/api/v1/interventions/{outcome['id']}").json()

    assert (shown["campaign"], shown["variant"]) == (campaign.pk, expected_arm(campaign, "sam"))


def test_variant_template_is_used(shop):
    template_actions.check_create_template(
        shop.store,
        key="ten-off",
        name="Ten off",
        content={"en": {"websocket": {"title": "10% off", "body": "Come back"}}},
        publish=True,
    )
    campaign = running_campaign(
        shop,
        variants=[
            {"key": "control", "weight": 0.001},
            {"key": "templated", "weight": 99.999, "template_key": "ten-off"},
        ],
    )
    assert expected_arm(campaign, "sam") == "templated"

    abandon(shop, "sam")

    intervention = Intervention.objects.get()
    assert intervention.template_key == "ten-off"


def test_a_checkout_after_exposure_counts_for_the_shoppers_arm(shop):
    campaign = running_campaign(shop)
    arm = expected_arm(campaign, "sam")
    abandon(shop, "sam")
    abandon(shop, "alex")

    shop.client.post(
        "/api/v1/events",
        {
            "type": "checkout_completed",
            "cart_id": "cart-sam",
            "user_id": "sam",
            "cart": {"value": "80.00"},
        },
        format="json",
    )
    document = shop.client.get(f"/api/v1/campaigns/{campaign.pk}/results").json()

    converted = {v["key"]: (v["conversions"], v["revenue"]) for v in document["variants"]}
    assert converted[arm] == (1, "80.00")
    assert sum(v["exposures"] for v in document["variants"]) == 2
    assert sum(v["conversions"] for v in document["variants"]) == 1

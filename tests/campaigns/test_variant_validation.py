"""Variants and holdout are checked once, the same way for the API and the admin."""

import pytest

from campaigns.models import Campaign
from templates import actions as template_actions

pytestmark = pytest.mark.django_db


def post(shop, **fields):
    body = {"name": "Split", "trigger": "cart_abandoned", "channel": "email", **fields}
    return shop.client.post("/api/v1/campaigns", body, format="json")


@pytest.mark.parametrize(
    ("fields", "field_named"),
    [
        ({"variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 40}]}, "variants"),
        ({"variants": [{"key": "a", "weight": 50}, {"key": "a", "weight": 50}]}, "variants.1.key"),
        ({"variants": [{"key": "a", "weight": 100, "colour": "red"}]}, "variants.0.colour"),
        (
            {"variants": [{"key": "a", "weight": 100, "template_key": "missing"}]},
            "variants.0.template_key",
        ),
        ({"variants": [{"key": "holdout", "weight": 100}]}, "variants.0.key"),
        ({"holdout_percent": 10}, "holdout_percent"),
        ({"min_cart_value": "90.00", "max_cart_value": "10.00"}, "min_cart_value"),
        (
            {"starts_at": "2100-01-02T00:00:00Z", "ends_at": "2100-01-01T00:00:00Z"},
            "ends_at",
        ),
    ],
)
def test_invalid_experiment_is_a_400_naming_the_field(shop, fields, field_named):
    response = post(shop, **fields)

    assert response.status_code == 400, response.content
    assert field_named in response.json()["error"]["fields"]
    assert not Campaign.objects.exists()


def test_draft_template_in_a_variant_is_refused(shop):
    template_actions.check_create_template(
        shop.store,
        key="unpublished",
        name="Unpublished",
        content={"en": {"email": {"subject": "Hi", "text": "x"}}},
    )

    response = post(shop, variants=[{"key": "a", "weight": 100, "template_key": "unpublished"}])

    assert response.status_code == 400
    assert "variants.0.template_key" in response.json()["error"]["fields"]


def test_valid_split_with_holdout_is_stored(shop):
    response = post(
        shop,
        variants=[
            {"key": "control", "weight": 33.3},
            {"key": "b", "weight": 33.3, "delay_minutes": 30},
            {"key": "c", "weight": 33.4, "discount_percent": "15"},
        ],
        holdout_percent=10,
    )

    assert response.status_code == 201, response.content
    campaign = Campaign.objects.get()
    assert campaign.holdout_percent == 10
    assert campaign.variants == [
        {"key": "control", "weight": 33.3},
        {"key": "b", "weight": 33.3, "delay_minutes": 30},
        {"key": "c", "weight": 33.4, "discount_percent": "15.00"},
    ]

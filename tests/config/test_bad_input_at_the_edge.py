"""Bodies PostgreSQL or Python would choke on are a 400/413 naming the problem, never a 500."""

import json

import pytest

from config.parsers import MAX_JSON_DEPTH

pytestmark = pytest.mark.django_db

LATER = "2099-01-01T09:00:00Z"


def post_raw(shop, path: str, body: str):
    return shop.client.post(path, data=body, content_type="application/json")


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.fixture
def scheduled(shop) -> str:
    response = shop.client.post(
        "/api/v1/interventions/schedule",
        {
            "user_id": "sam",
            "channel": "email",
            "user": {"email": "sam@example.test"},
            "scheduled_at": LATER,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return str(response.json()["id"])


# --- NUL characters ---------------------------------------------------------


def test_nul_in_a_free_form_trigger_value_names_its_path(shop):
    response = shop.client.post(
        "/api/v1/interventions",
        {"user_id": "sam", "personalization": {"coupon": "SAVE\u000010"}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "personalization.coupon": ["Null characters are not allowed."]
    }


def test_nul_deep_in_a_batch_item_names_the_item_and_field(shop):
    item = {"user_id": "sam", "user": {"email": "sam@example.test"}}
    bad = {**item, "personalization": {"lines": [{"name": "ok"}, {"name": "Te\u0000nt"}]}}

    response = shop.client.post(
        "/api/v1/interventions/batch", {"interventions": [item, bad]}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [
        "interventions.1.personalization.lines.1.name"
    ]


def test_nul_in_a_patch_key_is_refused_and_nothing_changes(shop, scheduled):
    response = shop.client.patch(
        f"/api/v1/interventions/{scheduled}",
        {"personalization": {"coupon\u0000": "SAVE10"}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "personalization": ["Null characters are not allowed in keys."]
    }
    detail = shop.client.get(f"/api/v1/interventions/{scheduled}").json()
    assert "coupon\u0000" not in detail["personalization"]


# --- Deep nesting -------------------------------------------------------------


def test_json_nested_past_the_limit_is_400_with_the_limit(shop):
    body = '{"user_id": "sam", "personalization": {"deep": ' + nested(MAX_JSON_DEPTH) + "}}"

    response = post_raw(shop, "/api/v1/interventions", body)

    error = response.json()["error"]
    assert response.status_code == 400
    assert error["code"] == "malformed_request"
    assert "nested too deeply" in error["message"]
    assert str(MAX_JSON_DEPTH) in error["message"]


def test_json_nested_past_pythons_recursion_limit_is_400(shop):
    body = '{"type": "cart_abandoned", "cart": ' + nested(100_000) + "}"

    response = post_raw(shop, "/api/v1/events", body)

    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]["message"]


def test_json_within_the_depth_limit_is_accepted(shop, scheduled):
    # The document itself and personalization are two levels; the rest fills up to the limit.
    deep = nested(MAX_JSON_DEPTH - 2)

    response = shop.client.patch(
        f"/api/v1/interventions/{scheduled}",
        data='{"personalization": {"deep": ' + deep + "}}",
        content_type="application/json",
    )

    assert response.status_code == 200, response.json()


# --- Body size ------------------------------------------------------------------


def test_body_over_the_limit_is_413_naming_the_limit(shop, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"user_id": "sam", "personalization": {"note": "x" * 20_000}})

    response = post_raw(shop, "/api/v1/interventions", body)

    error = response.json()["error"]
    assert response.status_code == 413
    assert error["code"] == "too_large"
    assert "10000 bytes" in error["message"]


def test_a_full_batch_of_realistic_triggers_fits_under_the_default_limit(shop):
    line = {
        "sku": "TENT-2P-GREEN-0001",
        "name": "Two-person ultralight tent, green",
        "price": "249.90",
        "quantity": 1,
        "image": "https://cdn.acme.test/products/tent-2p-green/main-1200x1200.jpg",
        "url": "https://shop.acme.test/products/tent-2p-green?variant=0001",
    }
    item = {
        "user_id": "shopper-000000000001",
        "cart_id": "cart-000000000001",
        "channel": "email",
        "template": "cart-reminder",
        "personalization": {"coupon": "SAVE10", "headline": "Your tent is waiting"},
        "user": {
            "email": "shopper-000000000001@example.test",
            "phone": "+33612345678",
            "first_name": "Camille",
            "locale": "fr-FR",
            "timezone": "Europe/Paris",
            "segment": "returning",
        },
        "cart": {"value": "4998.00", "currency": "EUR", "items": [line] * 20},
        # An unknown field fails each item before any other validation or database work:
        # only the size of the body is under test (a valid batch this size takes a minute).
        "size_only": True,
    }
    body = json.dumps({"interventions": [item] * 1000})
    assert len(body) > 2_621_440  # Django's default would have refused it

    response = post_raw(shop, "/api/v1/interventions/batch", body)

    assert response.status_code == 207
    assert response.json()["failed"] == 1000


# --- Phone numbers ------------------------------------------------------------------


@pytest.mark.parametrize("phone", ["call me maybe", "0612345678", "+0612345678", "+33 6 12"])
def test_shopper_phone_must_be_e164_like_events(shop, phone):
    response = shop.client.post(
        "/api/v1/shoppers", {"user_id": "sam", "phone": phone}, format="json"
    )
    event = shop.client.post(
        "/api/v1/events",
        {"type": "cart_abandoned", "cart_id": "c-1", "user_id": "sam", "user": {"phone": phone}},
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["phone"]
    assert event.status_code == 400


def test_shopper_phone_in_e164_is_kept(shop):
    created = shop.client.post(
        "/api/v1/shoppers", {"user_id": "sam", "phone": "+33612345678"}, format="json"
    )
    patched = shop.client.patch(
        f"/api/v1/shoppers/{created.json()['id']}", {"phone": "not a number"}, format="json"
    )

    assert created.status_code == 201
    assert created.json()["phone"] == "+33612345678"
    assert patched.status_code == 400

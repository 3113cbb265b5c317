"""Bad input is a 400 naming the field, in one error shape; never a 500."""

import pytest

pytestmark = pytest.mark.django_db


def test_malformed_json_is_400(shop):
    response = shop.client.post(
        "/api/v1/shoppers", data="{not json", content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_unknown_field_is_named(shop):
    response = shop.client.post(
        "/api/v1/shoppers", {"user_id": "u-1", "emial": "typo@acme.test"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"emial": ["Unknown field."]}


def test_wrong_type_is_named(shop):
    response = shop.client.post(
        "/api/v1/shoppers",
        {"user_id": "u-1", "channel_preferences": "email"},
        format="json",
    )

    body = response.json()["error"]
    assert response.status_code == 400
    assert "channel_preferences" in body["fields"]
    assert body["message"].startswith("channel_preferences:")


def test_nested_errors_are_flattened_to_paths(shop):
    response = shop.client.patch(
        f"/api/v1/stores/{shop.store.pk}",
        {"channel_caps_per_day": {"sms": -1}},
        format="json",
    )

    assert response.status_code == 400
    assert "channel_caps_per_day.sms" in response.json()["error"]["fields"]


def test_unknown_path_is_json_404(client):
    response = client.get("/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"

"""/api/v1/webhook-endpoints: store-scoped, the secret shown once, bad input a 400 that
names the field, private targets refused in production."""

import pytest

pytestmark = pytest.mark.django_db

URL = "https://93.184.215.14/hooks"  # a public address: no DNS lookup in tests


def test_the_secret_is_shown_at_creation_only(shop):
    created = shop.client.post("/api/v1/webhook-endpoints", {"url": URL}, format="json")

    listed = shop.client.get("/api/v1/webhook-endpoints")
    detail = shop.client.get(f"/api/v1/webhook-endpoints/{created.json()['id']}")

    assert created.status_code == 201
    assert created.json()["secret"].startswith("whsec_")
    assert "secret" not in listed.json()[0]
    assert "secret" not in detail.json()


def test_another_stores_endpoint_is_a_404(shop, other_shop):
    theirs = other_shop.client.post("/api/v1/webhook-endpoints", {"url": URL}, format="json")
    path = f"/api/v1/webhook-endpoints/{theirs.json()['id']}"

    responses = [
        shop.client.get(path),
        shop.client.patch(path, {"enabled": False}, format="json"),
        shop.client.post(f"{path}/replay", {"ids": ["msg_x"]}, format="json"),
        shop.client.delete(path),
    ]

    assert [r.status_code for r in responses] == [404, 404, 404, 404]
    assert shop.client.get("/api/v1/webhook-endpoints").json() == []


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/hooks", "http://10.1.2.3/hooks", "http://169.254.169.254/latest"],
)
def test_private_and_loopback_targets_are_refused_in_production(shop, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False

    response = shop.client.post("/api/v1/webhook-endpoints", {"url": url}, format="json")

    assert response.status_code == 400
    assert "private, loopback or reserved" in str(response.json()["error"]["fields"]["url"])


def test_unknown_event_types_are_a_400_naming_the_field(shop):
    response = shop.client.post(
        "/api/v1/webhook-endpoints",
        {"url": URL, "event_types": ["intervention.sent", "cart.exploded"]},
        format="json",
    )

    assert response.status_code == 400
    assert "cart.exploded" in str(response.json()["error"]["fields"]["event_types"])


def test_a_changed_url_is_checked_too(shop, settings):
    created = shop.client.post("/api/v1/webhook-endpoints", {"url": URL}, format="json").json()
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False

    response = shop.client.patch(
        f"/api/v1/webhook-endpoints/{created['id']}",
        {"url": "http://192.168.0.10/x"},
        format="json",
    )

    assert response.status_code == 400
    assert "url" in response.json()["error"]["fields"]

import time

import pytest
from django.core import signing

from realtime.tokens import SALT, TokenRefused, check_token, issue_token

pytestmark = pytest.mark.django_db


def test_store_backend_gets_a_store_token_with_its_expiry(shop):
    response = shop.client.post("/api/v1/realtime/tokens", {"scope": "store"}, format="json")

    assert response.status_code == 201
    body = response.json()
    claim = check_token(body["token"], "store", str(shop.store.pk))
    assert claim.store_id == str(shop.store.pk)
    assert body["expires_at"].endswith("Z")
    assert body["path"].startswith(f"/ws/store/{shop.store.pk}/?token=")


def test_user_token_opens_only_that_shoppers_room(shop):
    response = shop.client.post(
        "/api/v1/realtime/tokens", {"scope": "user", "user_id": "u-1", "ttl": 60}, format="json"
    )

    token = response.json()["token"]
    assert check_token(token, "user", user_id="u-1").store_id == str(shop.store.pk)
    with pytest.raises(TokenRefused) as refused:
        check_token(token, "user", user_id="u-2")
    assert refused.value.problem == "mismatch"


def test_user_token_without_user_id_is_a_400_naming_the_field(shop):
    response = shop.client.post("/api/v1/realtime/tokens", {"scope": "user"}, format="json")

    assert response.status_code == 400
    assert "user_id" in response.json()["error"]["fields"]


def test_unknown_fields_and_oversized_ttl_are_refused(shop, settings):
    settings.WS_TOKEN_MAX_TTL_SECONDS = 600

    unknown = shop.client.post(
        "/api/v1/realtime/tokens", {"scope": "store", "room": "x"}, format="json"
    )
    too_long = shop.client.post(
        "/api/v1/realtime/tokens", {"scope": "store", "ttl": 601}, format="json"
    )

    assert unknown.status_code == 400
    assert "room" in unknown.json()["error"]["fields"]
    assert too_long.status_code == 400
    assert "ttl" in too_long.json()["error"]["fields"]


def test_tokens_need_the_api_key(client):
    response = client.post(
        "/api/v1/realtime/tokens", {"scope": "store"}, content_type="application/json"
    )

    assert response.status_code in (401, 403)


def test_expired_forged_and_other_store_tokens_are_refused(shop, other_shop):
    expired = signing.dumps(
        {"s": str(shop.store.pk), "c": "store", "u": "", "e": int(time.time()) - 1}, salt=SALT
    )
    forged = signing.dumps(
        {"s": str(shop.store.pk), "c": "store", "u": "", "e": int(time.time()) + 60},
        key="not-our-secret",
        salt=SALT,
    )
    others, _ = issue_token(str(other_shop.store.pk), "store")

    problems = []
    for token in ("", expired, forged, others):
        with pytest.raises(TokenRefused) as refused:
            check_token(token, "store", str(shop.store.pk))
        problems.append(refused.value.problem)

    assert problems == ["missing", "expired", "invalid", "mismatch"]

"""Another store's ids are 404s, never the object, on every verb."""

import pytest

from stores.actions import do_upsert_shopper

pytestmark = pytest.mark.django_db


def test_store_sees_only_itself(shop, other_shop):
    assert shop.client.get(f"/api/v1/stores/{other_shop.store.pk}").status_code == 404
    listed = shop.client.get("/api/v1/stores").json()
    assert [s["id"] for s in listed] == [str(shop.store.pk)]


def test_another_stores_shopper_is_not_found(shop, other_shop):
    theirs = do_upsert_shopper(other_shop.store, "u-1", {"email": "a@rival.test"})

    assert shop.client.get(f"/api/v1/shoppers/{theirs.pk}").status_code == 404
    assert (
        shop.client.patch(
            f"/api/v1/shoppers/{theirs.pk}", {"segment": "vip"}, format="json"
        ).status_code
        == 404
    )
    assert shop.client.delete(f"/api/v1/shoppers/{theirs.pk}").status_code == 404
    theirs.refresh_from_db()
    assert theirs.segment == ""


def test_lists_hold_only_own_shoppers(shop, other_shop):
    do_upsert_shopper(shop.store, "mine")
    do_upsert_shopper(other_shop.store, "theirs")

    listed = shop.client.get("/api/v1/shoppers").json()

    assert [s["user_id"] for s in listed] == ["mine"]


def test_created_rows_belong_to_the_authenticated_store(shop, other_shop):
    response = shop.client.post(
        "/api/v1/shoppers", {"user_id": "u-9", "email": "x@acme.test"}, format="json"
    )

    assert response.status_code == 201
    assert other_shop.client.get(f"/api/v1/shoppers/{response.json()['id']}").status_code == 404


def test_same_user_id_may_exist_in_two_stores(shop, other_shop):
    for session in (shop, other_shop):
        response = session.client.post("/api/v1/shoppers", {"user_id": "u-1"}, format="json")
        assert response.status_code == 201

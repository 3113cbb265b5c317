import io

import pytest
from django.core.management import call_command

from realtime.tokens import check_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_store(settings):
    call_command("seed_demo", stdout=io.StringIO())


def test_demo_storefront_is_off_unless_enabled(client, demo_store, settings):
    settings.DEMO_STOREFRONT_ENABLED = False

    page = client.get("/demo/storefront/")
    trigger = client.post("/demo/storefront/abandon-cart")

    assert page.status_code == 404
    assert trigger.status_code == 404


def test_demo_page_names_its_shopper_and_gives_the_page_a_user_token(client, demo_store, settings):
    settings.DEMO_STOREFRONT_ENABLED = True

    response = client.get("/demo/storefront/")

    shopper = response.cookies["demo_shopper"].value
    token = response.context["token"]
    assert response.status_code == 200
    assert check_token(token, "user", user_id=shopper).scope == "user"
    assert b"intervention-client.js" in response.content


def test_simulated_abandoned_cart_needs_the_page_first(client, demo_store, settings):
    settings.DEMO_STOREFRONT_ENABLED = True

    response = client.post("/demo/storefront/abandon-cart")

    assert response.status_code == 400
    assert "Load /demo/storefront/ first" in response.json()["error"]["message"]

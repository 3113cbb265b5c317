import re

import pytest
from django.core import signing

from templates.actions import do_create_version, do_publish_version
from templates.models import Template
from tracking.links import RECOVERY_SALT
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def email_with_cart_link(shop):
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.cart_url_template = "https://acme.example/cart?id={cart_id}"
    shop.store.save()
    template = Template.objects.create(store=shop.store, key="comeback", name="Come back")
    version = do_create_version(
        template,
        content={
            "en": {
                "email": {
                    "subject": "Your cart",
                    "text": "Finish here: {{ cart.recovery_url }}",
                    "html": "<a href='{{ cart.recovery_url }}'>Finish</a>",
                }
            }
        },
    )
    do_publish_version(template, version)


def sent_link(shop, cart_id="cart 7/b"):
    created = shop.client.post(
        "/api/v1/interventions",
        {"user_id": "sam", "cart_id": cart_id, "channel": "email", "template": "comeback",
         "user": {"email": "sam@example.test"}},
        format="json",
    ).json()  # fmt: skip
    return created["id"], re.search(r"http\S+/r/\S+", created["content"]["text"]).group(0)


def test_click_on_the_cart_link_is_recorded_and_lands_on_the_cart(
    shop, client, email_with_cart_link
):
    intervention_id, link = sent_link(shop)

    response = client.get(link.replace("http://127.0.0.1:8000", ""))

    assert response.status_code == 302
    assert response["Location"] == "https://acme.example/cart?id=cart%207%2Fb"
    click = TrackingEvent.objects.get(intervention_id=intervention_id, kind="clicked")
    assert (click.source, click.metadata) == ("link", {"channel": "email"})


def test_forged_or_foreign_links_are_404_and_record_nothing(
    shop, other_shop, client, email_with_cart_link
):
    _, link = sent_link(shop)
    token = link.rsplit("/", 1)[1]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    other_store_link = signing.dumps({"s": str(other_shop.store.pk), "c": "x"}, salt=RECOVERY_SALT)

    assert client.get(f"/r/{forged}").status_code == 404
    assert client.get(f"/r/{other_store_link}").json()["error"]["code"] == "no_cart_url"
    assert not TrackingEvent.objects.filter(kind="clicked").exists()

"""What the pipeline gets from a template: the published version, localized, with defaults."""

import contextlib
import contextvars
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from interventions.actions.personalization import build_context, unique_discount_code
from interventions.models import Cart
from stores.actions import do_upsert_shopper
from templates import actions
from templates.rendering import RenderError, published_template, render_message
from tracking.links import read_recovery_token

pytestmark = pytest.mark.django_db

CONTENT = {
    "en": {
        "sms": {
            "body": "Hi {{ shopper.first_name }}, {{ discount.percent }}% off: {{ cart.recovery_url }}"
        },
        "email": {
            "subject": "Your cart at {{ store.name }}",
            "html": "<p>Hi {{ shopper.first_name }}</p>",
        },
    },
    "fr": {"sms": {"body": "Bonjour {{ shopper.first_name }}"}},
}
VARIABLES = [
    {"name": "shopper.first_name", "type": "string", "default": "there"},
    {"name": "discount.percent", "type": "number", "default": "5"},
]


@pytest.fixture
def template(shop):
    return actions.check_create_template(
        shop.store,
        key="cart-reminder",
        name="Cart reminder",
        variables=VARIABLES,
        content=CONTENT,
        publish=True,
    )


def context_for(shop, first_name="", locale="", discount=None):
    shopper = do_upsert_shopper(shop.store, "sam", {"first_name": first_name, "locale": locale})
    cart, _ = Cart.objects.get_or_create(
        store=shop.store, external_id="c-1", defaults={"value": "42.50", "currency": "EUR"}
    )
    return build_context(
        store=shop.store, shopper=shopper, cart=cart, personalization={}, discount=discount
    )


def test_published_version_renders_with_the_shoppers_data(shop, template):
    version, content = render_message(
        shop.store.pk, "cart-reminder", "sms", context_for(shop, "Zoé", discount={"percent": "15"})
    )

    assert version.number == 1
    assert content["body"].startswith("Hi Zoé, 15% off: http")


def test_missing_data_falls_back_to_declared_defaults(shop, template):
    _, content = render_message(shop.store.pk, "cart-reminder", "sms", context_for(shop))

    assert content["body"].startswith("Hi there, 5% off: ")


def test_locale_falls_back_from_region_to_language_to_template_default(shop, template):
    context = context_for(shop, "Zoé")

    _, french = render_message(shop.store.pk, "cart-reminder", "sms", context, "fr-CA")
    _, german = render_message(shop.store.pk, "cart-reminder", "sms", context, "de")
    _, french_email = render_message(shop.store.pk, "cart-reminder", "email", context, "fr")

    assert french["body"] == "Bonjour Zoé"
    assert german["body"].startswith("Hi Zoé")
    assert french_email["subject"] == "Your cart at Acme Outdoor"


def test_email_gets_a_text_part_derived_from_html(shop, template):
    _, content = render_message(shop.store.pk, "cart-reminder", "email", context_for(shop, "Zoé"))

    assert content["text"] == "Hi Zoé"


def test_publishing_a_new_version_is_used_at_once_and_rollback_restores_the_old(shop, template):
    render_message(shop.store.pk, "cart-reminder", "sms", context_for(shop))  # cached now
    second = actions.check_create_version(
        template, content={"en": {"sms": {"body": "New text"}}}, publish=True
    )

    version, content = render_message(shop.store.pk, "cart-reminder", "sms", context_for(shop))
    assert (version.number, content["body"]) == (2, "New text")

    actions.do_publish_version(template, template.versions.get(number=1))
    version, content = render_message(shop.store.pk, "cart-reminder", "sms", context_for(shop))
    assert version.number == 1
    assert second.number == 2


def test_unknown_or_unpublished_template_is_a_render_error(shop, template):
    actions.check_create_template(shop.store, key="draft", name="Draft")

    with pytest.raises(RenderError) as unknown:
        render_message(shop.store.pk, "nope", "sms", context_for(shop))
    with pytest.raises(RenderError) as draft:
        render_message(shop.store.pk, "draft", "sms", context_for(shop))

    assert unknown.value.reason == "template_not_found"
    assert draft.value.reason == "template_not_published"


def test_channel_without_content_is_a_render_error(shop, template):
    with pytest.raises(RenderError) as missing:
        render_message(shop.store.pk, "cart-reminder", "push", context_for(shop))

    assert missing.value.reason == "channel_missing"


def test_another_stores_template_is_not_found(shop, other_shop, template):
    with pytest.raises(RenderError):
        render_message(other_shop.store.pk, "cart-reminder", "sms", context_for(shop))


def test_recovery_url_is_signed_for_the_cart(shop):
    context = context_for(shop)

    token = context["cart"]["recovery_url"].rsplit("/", 1)[1]

    assert read_recovery_token(token) == (str(shop.store.pk), "c-1", "")
    assert str(shop.store.pk) not in token


def test_unique_discount_codes_differ_per_intervention_and_are_stable():
    first = unique_discount_code("00000000-0000-0000-0000-000000000001", prefix="save")

    assert first == unique_discount_code("00000000-0000-0000-0000-000000000001", prefix="save")
    assert first != unique_discount_code("00000000-0000-0000-0000-000000000002", prefix="save")
    assert first.startswith("SAVE-")


def test_deleting_a_store_deletes_its_published_templates(shop, template):
    shop.store.delete()

    assert not type(template).objects.filter(pk=template.pk).exists()


def test_discount_can_carry_a_code_unique_to_the_intervention(shop):
    context = context_for(
        shop, discount={"percent": "10", "unique_code_for": "i-42", "prefix": "back"}
    )

    assert context["discount"] == {"percent": "10", "code": unique_discount_code("i-42", "back")}


def redis_sockets_of_this_process() -> int:
    port = f":{urlsplit(settings.REDIS_URL).port or 6379:04X}"
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                ours.add(target[8:-1])
    established = [
        line.split()
        for table in ("/proc/net/tcp", "/proc/net/tcp6")
        for line in Path(table).read_text().splitlines()[1:]
    ]
    return sum(1 for f in established if f[2].endswith(port) and f[3] == "01" and f[9] in ours)


def test_concurrent_requests_render_through_one_redis_connection(shop, template):
    """Under ASGI each request has its own context, and Django's ``cache`` one client per
    context: every render in a request opened a connection to Redis of its own (issue 12)."""
    published_template(shop.store.pk, "cart-reminder")
    before = redis_sockets_of_this_process()

    requests = [contextvars.Context() for _ in range(5)]
    for request in requests:
        request.run(published_template, shop.store.pk, "cart-reminder")

    assert redis_sockets_of_this_process() == before

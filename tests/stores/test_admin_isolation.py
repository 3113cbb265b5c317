"""Staff users reach only their own stores' rows in the admin, and their role decides what
they may change. Every test walks ``admin.site._registry``, so a model registered tomorrow
without scoping (or without a way to build it here) fails them."""

from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission, User
from django.db import models
from django.test import Client
from django.urls import reverse

from campaigns.models import Campaign
from interventions.models import Cart, CartEvent, Intervention, Status
from notifications.actions import do_suppress_address
from notifications.models import Device, Suppression
from outbound.actions import do_dispatch_outbox
from outbound.models import WebhookDelivery, WebhookEndpoint
from stores.actions import do_grant_store_membership
from stores.admin_scoping import StoreScopedAdmin, StoreScoping, store_path_to
from stores.models import AuditEntry, Shopper, Store, StoreApiKey, StoreMembership, StoreRole
from templates import actions as template_actions
from templates.models import Template, TemplateVersion

pytestmark = pytest.mark.django_db

STORE_OWNED_ADMINS = sorted(
    (model for model in admin.site._registry if store_path_to(model) is not None),
    key=lambda model: model._meta.label,
)


def label(model: type[models.Model]) -> str:
    return model._meta.label


def autocomplete_sources() -> list[tuple[type[models.Model], str]]:
    """One foreign key per store-owned target the autocomplete view can be asked about:
    Django answers for any field whose target admin has search fields, listed or not."""
    sources: dict[type[models.Model], tuple[type[models.Model], str]] = {}
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            target = field.related_model
            if not (field.many_to_one or field.one_to_one) or target in sources:
                continue
            target_admin = admin.site._registry.get(target)
            if target_admin and target_admin.search_fields and store_path_to(target):
                sources[target] = (model, field.name)
    return sorted(sources.values(), key=lambda source: f"{label(source[0])}.{source[1]}")


def furnish(session) -> dict[type[models.Model], models.Model]:
    """One row of every store-owned model the admin shows, built through the real actions
    and API; a newly registered model needs a line here."""
    store = session.store
    client = session.client
    campaign = client.post(
        "/api/v1/campaigns",
        {"name": f"{store.name} comeback", "trigger": "cart_abandoned", "channel": "sms"},
        format="json",
    )
    assert campaign.status_code == 201, campaign.content
    template = template_actions.check_create_template(
        store,
        key="reminder",
        name=f"{store.name} reminder",
        content={"en": {"sms": {"body": "Hi {{ shopper.first_name }}!"}}},
        publish=True,
    )
    sam = {"email": f"sam@{store.pk}.test", "push_tokens": [f"token-{store.pk}"]}
    event = client.post(
        "/api/v1/events",
        {"type": "cart_updated", "cart_id": "c-1", "user_id": "sam", "user": sam},
        format="json",
    )
    assert event.status_code == 202, event.content
    trigger = client.post(
        "/api/v1/interventions",
        {"user_id": "sam", "channel": "email", "scheduled_at": "2100-01-01T10:00:00Z"},
        format="json",
    )
    assert trigger.status_code == 201, trigger.content
    do_suppress_address(store.pk, "email", f"bounced@{store.pk}.test", "hard_bounce")
    # Nothing listens there: the delivery stays pending, which is all the admin needs.
    hook = client.post(
        "/api/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hooks"}, format="json"
    )
    assert hook.status_code == 201, hook.content
    do_dispatch_outbox()
    return {
        Store: store,
        StoreApiKey: StoreApiKey.objects.get(store=store),
        Shopper: Shopper.objects.get(store=store),
        Campaign: Campaign.objects.get(store=store),
        Template: template,
        TemplateVersion: template.versions.get(),
        Cart: Cart.objects.get(store=store),
        CartEvent: CartEvent.objects.get(store=store),
        Intervention: Intervention.objects.get(store=store),
        Device: Device.objects.get(store=store),
        Suppression: Suppression.objects.get(store=store),
        WebhookEndpoint: WebhookEndpoint.objects.get(store=store),
        WebhookDelivery: WebhookDelivery.objects.filter(endpoint__store=store).first(),
        AuditEntry: AuditEntry.objects.filter(store=store).first(),
    }


@pytest.fixture
def rows(shop, other_shop):
    """Ours (the member's store) and theirs (another tenant), one of each model."""
    return furnish(shop), furnish(other_shop)


def staff_client(username: str, **roles: Any) -> Client:
    user = User.objects.create_user(username, is_staff=True)
    for store, role in roles.values():
        do_grant_store_membership(user, store, role)
    client = Client()
    client.force_login(user)
    return client


def member(store: Store, role: StoreRole) -> Client:
    return staff_client(f"{role}-of-{store.pk}", only=(store, role))


def url(model: type[models.Model], view: str, *args: Any) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def change_url(row: models.Model) -> str:
    return url(type(row), "change", quote(row.pk))


def still_there(row: models.Model) -> bool:
    return type(row)._default_manager.filter(pk=row.pk).exists()


def test_every_store_owned_model_in_the_admin_is_scoped_and_covered_here(shop):
    ours = furnish(shop)
    for model in STORE_OWNED_ADMINS:
        model_admin = admin.site._registry[model]
        assert isinstance(model_admin, StoreScopedAdmin), f"{label(model)} admin is not scoped"
        assert model in ours, f"add a {label(model)} row to furnish() in this file"
        for inline in model_admin.inlines:
            if store_path_to(inline.model) is not None:
                assert issubclass(inline, StoreScoping), f"{inline.__name__} is not scoped"


@pytest.mark.parametrize("role", list(StoreRole))
@pytest.mark.parametrize("model", STORE_OWNED_ADMINS, ids=label)
def test_changelist_lists_only_the_members_stores(rows, model, role):
    ours, theirs = rows
    client = member(ours[Store], role)

    page = client.get(url(model, "changelist"))

    assert page.status_code == 200
    html = page.content.decode()
    assert change_url(ours[model]) in html
    assert change_url(theirs[model]) not in html
    # Not even in the list filters' choices.
    assert theirs[Store].name not in html


@pytest.mark.parametrize("model", STORE_OWNED_ADMINS, ids=label)
def test_another_stores_object_is_not_found_on_any_page(rows, model):
    ours, theirs = rows
    client = member(ours[Store], StoreRole.OWNER)
    theirs_id = quote(theirs[model].pk)

    assert client.get(change_url(ours[model])).status_code == 200
    assert client.get(url(model, "add")).status_code in (200, 403)
    for view in ("change", "delete", "history"):
        page = client.get(url(model, view, theirs_id))
        assert page.status_code == 404, view
        assert theirs[Store].name not in page.content.decode()
    assert client.post(url(model, "change", theirs_id), {}).status_code == 404
    assert client.post(url(model, "delete", theirs_id), {"post": "yes"}).status_code == 404
    assert still_there(theirs[model])


@pytest.mark.parametrize("model", STORE_OWNED_ADMINS, ids=label)
def test_bulk_delete_with_another_stores_ids_deletes_none_of_them(rows, model):
    ours, theirs = rows
    client = member(ours[Store], StoreRole.OWNER)

    client.post(
        url(model, "changelist"),
        {"action": "delete_selected", "_selected_action": [theirs[model].pk], "post": "yes"},
    )

    assert still_there(theirs[model])


@pytest.mark.parametrize(
    ("source", "field_name"),
    autocomplete_sources(),
    ids=lambda value: label(value) if isinstance(value, type) else value,
)
def test_autocomplete_offers_only_the_members_stores(rows, source, field_name):
    ours, theirs = rows
    target = source._meta.get_field(field_name).related_model
    client = member(ours[Store], StoreRole.MARKETER)

    answer = client.get(
        "/admin/autocomplete/",
        {
            "app_label": source._meta.app_label,
            "model_name": source._meta.model_name,
            "field_name": field_name,
            "term": "",
        },
    )

    assert answer.status_code == 200
    offered = {result["id"] for result in answer.json()["results"]}
    assert str(ours[target].pk) in offered
    assert str(theirs[target].pk) not in offered


def test_search_finds_nothing_in_another_store(rows):
    ours, theirs = rows
    client = member(ours[Store], StoreRole.MARKETER)

    page = client.get(url(Shopper, "changelist"), {"q": theirs[Shopper].email})

    assert change_url(theirs[Shopper]) not in page.content.decode()
    assert "0 shoppers" in page.content.decode()


@pytest.mark.parametrize("model", STORE_OWNED_ADMINS, ids=label)
def test_viewer_reads_but_cannot_change_or_delete(rows, model):
    ours, _ = rows
    client = member(ours[Store], StoreRole.VIEWER)

    page = client.get(change_url(ours[model]))
    refused = client.post(change_url(ours[model]), {})
    client.post(
        url(model, "changelist"),
        {"action": "delete_selected", "_selected_action": [ours[model].pk], "post": "yes"},
    )

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert refused.status_code == 403
    assert client.get(url(model, "add")).status_code == 403
    assert client.get(url(model, "delete", quote(ours[model].pk))).status_code == 403
    assert still_there(ours[model])


def test_staff_without_membership_sees_no_store_data(rows):
    client = staff_client("nobody")

    index = client.get("/admin/")

    assert index.status_code == 200
    assert "Shoppers" not in index.content.decode()
    assert client.get(url(Shopper, "changelist")).status_code == 403


def test_marketer_changes_a_campaign(rows):
    ours, _ = rows
    campaign = ours[Campaign]
    client = member(ours[Store], StoreRole.MARKETER)

    saved = client.post(
        change_url(campaign),
        {
            "store": str(campaign.store_id),
            "name": "Renamed by the marketer",
            "is_active": "on",
            "priority": "0",
            "trigger": campaign.trigger,
            "delay_minutes": "0",
            "channel": campaign.channel,
            "template_key": "",
            "segments": "[]",
        },
    )

    assert saved.status_code == 302, saved.content.decode()[:2000]
    campaign.refresh_from_db()
    assert campaign.name == "Renamed by the marketer"


def test_marketer_cannot_touch_api_keys_store_settings_or_suppressions(rows):
    ours, _ = rows
    client = member(ours[Store], StoreRole.MARKETER)

    assert client.get(change_url(ours[StoreApiKey])).status_code == 200
    assert client.get(url(StoreApiKey, "add")).status_code == 403
    assert client.post(change_url(ours[StoreApiKey]), {"name": "x"}).status_code == 403
    assert client.post(change_url(ours[Store]), {"name": "x"}).status_code == 403
    assert client.get(url(Suppression, "delete", ours[Suppression].pk)).status_code == 403
    ours[Store].refresh_from_db()
    assert ours[Store].name == "Acme Outdoor"


def test_owner_issues_an_api_key_for_their_store_only(rows):
    ours, theirs = rows
    client = member(ours[Store], StoreRole.OWNER)

    form = client.get(url(StoreApiKey, "add")).content.decode()
    issued = client.post(
        url(StoreApiKey, "add"), {"name": "checkout", "store": str(ours[Store].pk)}, follow=True
    )
    refused = client.post(
        url(StoreApiKey, "add"), {"name": "sneaky", "store": str(theirs[Store].pk)}
    )

    assert str(ours[Store].pk) in form
    assert str(theirs[Store].pk) not in form
    assert "The API key for checkout is" in issued.content.decode()
    assert StoreApiKey.objects.filter(store=ours[Store], name="checkout").exists()
    assert refused.status_code == 200  # the form again, with an error on the store
    assert not StoreApiKey.objects.filter(name="sneaky").exists()


def test_store_choices_are_the_stores_the_user_may_manage(rows):
    ours, theirs = rows
    client = staff_client(
        "mixed",
        ours=(ours[Store], StoreRole.MARKETER),
        theirs=(theirs[Store], StoreRole.VIEWER),
    )

    form = client.get(url(Campaign, "add")).content.decode()

    assert f'value="{ours[Store].pk}"' in form
    assert f'value="{theirs[Store].pk}"' not in form


def test_bulk_action_skips_stores_where_the_user_only_views(rows):
    ours, theirs = rows
    client = staff_client(
        "mixed",
        ours=(ours[Store], StoreRole.MARKETER),
        theirs=(theirs[Store], StoreRole.VIEWER),
    )

    client.post(
        url(Intervention, "changelist"),
        {
            "action": "cancel_unsent",
            "_selected_action": [ours[Intervention].pk, theirs[Intervention].pk],
        },
    )

    ours[Intervention].refresh_from_db()
    theirs[Intervention].refresh_from_db()
    assert ours[Intervention].status == Status.CANCELLED
    assert theirs[Intervention].status == Status.SCHEDULED


def test_owner_manages_memberships_marketer_only_sees_them(rows):
    ours, _ = rows
    colleague = User.objects.create_user("colleague", is_staff=True)
    do_grant_store_membership(colleague, ours[Store], StoreRole.VIEWER)
    owner = member(ours[Store], StoreRole.OWNER)
    marketer = member(ours[Store], StoreRole.MARKETER)

    store_page = marketer.get(change_url(ours[Store])).content.decode()
    owner_page = owner.get(change_url(ours[Store])).content.decode()

    assert "colleague" in store_page
    assert 'name="memberships-0-role"' not in store_page
    assert 'name="memberships-0-role"' in owner_page


@pytest.mark.parametrize("model", STORE_OWNED_ADMINS, ids=label)
def test_superuser_sees_every_store(rows, model):
    ours, theirs = rows
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.test", "pw"))

    html = client.get(url(model, "changelist")).content.decode()

    assert change_url(ours[model]) in html
    assert change_url(theirs[model]) in html
    assert client.get(change_url(theirs[model])).status_code == 200


def test_superuser_sees_a_users_memberships_on_the_user_page(rows):
    ours, _ = rows
    colleague = User.objects.create_user("colleague", is_staff=True)
    membership = do_grant_store_membership(colleague, ours[Store], StoreRole.MARKETER)
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.test", "pw"))

    page = client.get(url(User, "change", colleague.pk)).content.decode()

    assert f'name="store_memberships-0-id" value="{membership.pk}"' in page
    assert StoreMembership.objects.filter(user=colleague).count() == 1


def test_user_page_shows_only_memberships_in_stores_the_owner_owns(rows):
    ours, theirs = rows
    colleague = User.objects.create_user("colleague", is_staff=True)
    in_ours = do_grant_store_membership(colleague, ours[Store], StoreRole.VIEWER)
    in_theirs = do_grant_store_membership(colleague, theirs[Store], StoreRole.OWNER)
    owner = User.objects.create_user("owner", is_staff=True)
    do_grant_store_membership(owner, ours[Store], StoreRole.OWNER)
    do_grant_store_membership(owner, theirs[Store], StoreRole.MARKETER)
    owner.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_user", "change_user"])
    )
    client = Client()
    client.force_login(owner)

    page = client.get(url(User, "change", colleague.pk)).content.decode()

    assert f'name="store_memberships-0-id" value="{in_ours.pk}"' in page
    assert 'name="store_memberships-INITIAL_FORMS" value="1"' in page
    assert f'name="store_memberships-0-id" value="{in_theirs.pk}"' not in page
    assert f'<option value="{theirs[Store].pk}"' not in page

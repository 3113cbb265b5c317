"""Marketers edit, run and read campaigns in the admin with the API's rules."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns import actions
from campaigns.models import Campaign, CampaignChange, CampaignStatus, Exposure
from stores.actions import do_grant_store_membership, do_upsert_shopper
from stores.models import StoreRole
from templates import actions as template_actions
from tests.campaigns.experiment_rows import expose

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(shop) -> Client:
    user = User.objects.create_user("mia", is_staff=True)
    do_grant_store_membership(user, shop.store, StoreRole.MARKETER)
    client = Client()
    client.force_login(user)
    return client


def form(campaign: Campaign, **fields: str) -> dict[str, str]:
    return {
        "store": str(campaign.store_id),
        "name": campaign.name,
        "priority": "0",
        "trigger": campaign.trigger,
        "delay_minutes": "0",
        "channel": campaign.channel,
        "template_key": "",
        "segments": "[]",
        **fields,
    }


def change_url(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_change", args=[campaign.pk])


def draft(shop, **fields) -> Campaign:
    return Campaign.objects.create(
        store=shop.store,
        name="Comeback",
        trigger="cart_abandoned",
        channel="email",
        status=CampaignStatus.DRAFT,
        **fields,
    )


def test_weights_not_summing_to_100_are_refused_on_the_form(shop, marketer):
    campaign = draft(shop)

    page = marketer.post(
        change_url(campaign),
        form(campaign, variants='[{"key": "a", "weight": 60}, {"key": "b", "weight": 30}]'),
    )

    assert page.status_code == 200
    assert "Weights must sum to 100, they sum to 90" in page.content.decode()
    campaign.refresh_from_db()
    assert campaign.variants == []


def test_a_valid_split_is_saved_and_audited_under_the_users_name(shop, marketer):
    campaign = draft(shop)

    saved = marketer.post(
        change_url(campaign),
        form(
            campaign,
            variants='[{"key": "a", "weight": 50}, {"key": "b", "weight": 50}]',
            holdout_percent="10",
        ),
    )

    assert saved.status_code == 302, saved.content.decode()[:3000]
    campaign.refresh_from_db()
    assert [v["key"] for v in campaign.variants] == ["a", "b"]
    change = CampaignChange.objects.get(campaign=campaign)
    assert (change.actor, change.action) == ("mia", "updated")
    assert change.changes["holdout_percent"] == [0.0, 10.0]


def test_running_split_with_exposures_cannot_be_changed_on_the_form(shop, marketer):
    campaign = draft(shop, variants=[{"key": "a", "weight": 50.0}, {"key": "b", "weight": 50.0}])
    campaign.status = CampaignStatus.RUNNING
    campaign.save()
    Exposure.objects.create(campaign=campaign, shopper=do_upsert_shopper(shop.store, "s"), arm="a")

    page = marketer.post(
        change_url(campaign),
        form(campaign, variants='[{"key": "a", "weight": 10}, {"key": "b", "weight": 90}]'),
    )

    assert page.status_code == 200
    assert "bias the test" in page.content.decode()


def test_lifecycle_actions_launch_and_refuse_what_is_illegal(shop, marketer):
    campaign = draft(shop)
    changelist = reverse("admin:campaigns_campaign_changelist")

    marketer.post(changelist, {"action": "launch", "_selected_action": [campaign.pk]})
    campaign.refresh_from_db()
    refused = marketer.post(
        changelist, {"action": "archive", "_selected_action": [campaign.pk]}, follow=True
    )

    assert campaign.status == CampaignStatus.RUNNING
    assert "cannot become archived" in refused.content.decode()
    assert CampaignChange.objects.get(campaign=campaign).actor == "mia"


def test_change_page_shows_the_results_table(shop, marketer):
    campaign = draft(shop, variants=[{"key": "a", "weight": 50.0}, {"key": "b", "weight": 50.0}])
    Exposure.objects.create(
        campaign=campaign,
        shopper=do_upsert_shopper(shop.store, "s"),
        arm="b",
        exposed_at=datetime(2026, 3, 1, tzinfo=UTC),
    )

    page = marketer.get(change_url(campaign)).content.decode()

    assert "<th>Exposures</th>" in page
    assert "<tr><td>b</td><td>1</td><td>0</td>" in page


def command_url(campaign: Campaign, command: str) -> str:
    return reverse("admin:campaigns_campaign_command", args=[campaign.pk, command])


def published_template(shop, key: str, sms: str) -> None:
    template_actions.check_create_template(
        shop.store, key=key, name=key, content={"en": {"sms": {"body": sms}}}, publish=True
    )


def test_variants_are_entered_as_rows_with_a_template_picker(shop, marketer):
    # Given a draft and a published template
    published_template(shop, "comeback-10", "Hi {{ shopper.first_name }}, 10% off!")
    campaign = draft(shop)
    page = marketer.get(change_url(campaign)).content.decode()
    assert '<option value="comeback-10">comeback-10</option>' in page
    assert 'name="variants-0-key"' in page

    # When the marketer fills two rows, the second with its own template and channel
    saved = marketer.post(
        change_url(campaign),
        form(
            campaign,
            **{
                "variants-0-key": "control",
                "variants-0-weight": "50",
                "variants-1-key": "ten_off",
                "variants-1-weight": "50",
                "variants-1-template_key": "comeback-10",
                "variants-1-channel": "sms",
                "variants-1-discount_percent": "10",
                "variants-2-key": "",
            },
            holdout_percent="10",
        ),
    )

    # Then the campaign carries them as the API does
    assert saved.status_code == 302, saved.content.decode()[:3000]
    campaign.refresh_from_db()
    assert campaign.variants == [
        {"key": "control", "weight": 50.0},
        {
            "key": "ten_off",
            "weight": 50.0,
            "template_key": "comeback-10",
            "channel": "sms",
            "discount_percent": "10.0",
        },
    ]
    # and the page shows the variant's message rendered on its channel
    page = marketer.get(change_url(campaign)).content.decode()
    assert "ten_off — comeback-10 v1" in page
    assert "Hi Alex, 10% off!" in page or "10% off!" in page


def test_rows_with_weights_not_summing_to_100_are_refused(shop, marketer):
    campaign = draft(shop)

    page = marketer.post(
        change_url(campaign),
        form(
            campaign,
            **{
                "variants-0-key": "a",
                "variants-0-weight": "70",
                "variants-1-key": "b",
                "variants-1-weight": "20",
            },
        ),
    )

    assert page.status_code == 200
    assert "Weights must sum to 100, they sum to 90" in page.content.decode()
    campaign.refresh_from_db()
    assert campaign.variants == []


def test_a_post_without_variant_fields_keeps_the_variants(shop, marketer):
    split = [{"key": "a", "weight": 50.0}, {"key": "b", "weight": 50.0}]
    campaign = draft(shop, variants=split, holdout_percent=5.0)

    saved = marketer.post(change_url(campaign), form(campaign, name="Renamed"))

    assert saved.status_code == 302, saved.content.decode()[:3000]
    campaign.refresh_from_db()
    assert (campaign.name, campaign.variants) == ("Renamed", split)


def test_buttons_launch_refresh_and_complete_from_the_page(shop, marketer):
    # Given a draft with a split
    campaign = draft(shop, variants=[{"key": "a", "weight": 50.0}, {"key": "b", "weight": 50.0}])
    page = marketer.get(change_url(campaign)).content.decode()
    assert 'value="launch"' in page
    assert 'value="pause"' not in page

    # When the marketer presses Launch, then Refresh results, then Complete
    launched = marketer.post(command_url(campaign, "launch"), follow=True).content.decode()
    marketer.post(command_url(campaign, "refresh"))
    marketer.post(command_url(campaign, "complete"))

    # Then each happened under their name, and the page offers what applies now
    assert "Launch: now running" in launched
    assert 'value="pause"' in launched
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED
    assert [(c.action, c.actor) for c in campaign.changes.all()] == [
        ("launch", "mia"),
        ("complete", "mia"),
    ]
    assert campaign.snapshots.filter(trigger="refresh").count() == 1
    page = marketer.get(change_url(campaign)).content.decode()
    assert "frozen at completion" in page
    assert 'value="archive"' in page


def test_an_illegal_command_is_a_message_not_an_error(shop, marketer):
    campaign = draft(shop)

    page = marketer.post(command_url(campaign, "pause"), follow=True)

    assert page.status_code == 200
    assert "cannot become paused" in page.content.decode()


def test_results_panel_shows_verdict_srm_and_the_lift_chart(shop, marketer):
    # Given a running experiment computed twice with a lift
    campaign = draft(shop, variants=[{"key": "a", "weight": 50.0}, {"key": "b", "weight": 50.0}])
    actions.do_transition_campaign(campaign, "launch", "mia")
    at = timezone.now() - timedelta(hours=2)
    expose(campaign, "a", 200, 20, at)
    expose(campaign, "b", 200, 30, at)
    actions.do_refresh_results(campaign, "beat", timezone.now() - timedelta(minutes=30))
    actions.do_refresh_results(campaign, "beat", timezone.now())

    page = marketer.get(change_url(campaign)).content.decode()

    assert "Verdict: Collecting data" in page
    assert "Sample ratio check: <strong>ok</strong>" in page
    assert "+50.0% [" in page  # b's lift with its interval
    assert '<svg class="lift-chart"' in page
    assert page.count("<polyline") == 1  # one line: b over a


def test_undo_promotion_button_restores_the_split(shop, marketer):
    campaign = draft(
        shop,
        variants=[{"key": "a", "weight": 50.0}, {"key": "b", "weight": 50.0}],
        auto_promote=True,
    )
    actions.do_transition_campaign(campaign, "launch", "mia")
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=timezone.now() - timedelta(days=8))
    campaign.refresh_from_db()
    at = timezone.now() - timedelta(days=7)
    expose(campaign, "a", 2000, 200, at)
    expose(campaign, "b", 2000, 400, at)
    actions.do_refresh_results(campaign, "beat")
    page = marketer.get(change_url(campaign)).content.decode()
    assert "Promoted <strong>b</strong>" in page

    marketer.post(command_url(campaign, "undo_promotion"))

    campaign.refresh_from_db()
    assert campaign.live_weights is None
    assert campaign.changes.filter(action="undo_promotion", actor="mia").exists()


def test_commands_on_another_stores_campaign_are_not_found(shop, other_shop, marketer):
    theirs = Campaign.objects.create(
        store=other_shop.store,
        name="Theirs",
        trigger="cart_abandoned",
        channel="email",
        status=CampaignStatus.DRAFT,
    )

    response = marketer.post(command_url(theirs, "launch"))

    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == CampaignStatus.DRAFT


def test_a_viewer_cannot_press_the_buttons(shop):
    user = User.objects.create_user("vic", is_staff=True)
    do_grant_store_membership(user, shop.store, StoreRole.VIEWER)
    viewer = Client()
    viewer.force_login(user)
    campaign = draft(shop)

    assert 'value="launch"' not in viewer.get(change_url(campaign)).content.decode()
    assert viewer.post(command_url(campaign, "launch")).status_code == 403
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT

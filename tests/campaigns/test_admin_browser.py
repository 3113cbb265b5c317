"""A marketer in headless Chromium: create a campaign, add variants, launch it, read the
results. The screenshots in docs/campaigns.md come from this test:

    CAMPAIGN_SCREENSHOTS_DIR=docs/img .venv/bin/pytest tests/campaigns/test_admin_browser.py
"""

import os
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from campaigns import actions
from campaigns.models import Campaign, CampaignStatus
from stores.actions import do_grant_store_membership
from stores.models import StoreRole
from templates import actions as template_actions
from tests.campaigns.experiment_rows import expose

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
# Playwright's own browser download does not work here; Debian's chromium does.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
PASSWORD = "a long marketer passphrase"


@pytest.fixture
def marketer(shop):
    user = User.objects.create_user("mia", password=PASSWORD, is_staff=True)
    do_grant_store_membership(user, shop.store, StoreRole.MARKETER)
    template_actions.check_create_template(
        shop.store,
        key="comeback-10",
        name="Comeback, 10% off",
        content={
            "en": {
                "email": {
                    "subject": "Your cart misses you, {{ shopper.first_name }}",
                    "html": "<h1>Still thinking?</h1><p>Take <b>10% off</b> today.</p>",
                },
                "sms": {"body": "{{ shopper.first_name }}, your cart is waiting: 10% off today."},
            }
        },
        publish=True,
    )
    return user


def simulate_ten_days(campaign: Campaign) -> None:
    """Ten daily results computations over seeded traffic: b converts better than control."""
    launched = timezone.now() - timedelta(days=10)
    Campaign.objects.filter(pk=campaign.pk).update(launched_at=launched)
    campaign.refresh_from_db()
    rng = np.random.default_rng(20260315)
    for day in range(10):
        at = launched + timedelta(days=day, hours=2)
        for arm, rate in (("control", 0.10), ("ten_off", 0.13)):
            shoppers = 180
            expose(campaign, arm, shoppers, int(rng.binomial(shoppers, rate)), at, f"{arm}{day}")
        expose(campaign, "holdout", 40, int(rng.binomial(40, 0.08)), at, f"h{day}")
        actions.do_refresh_results(campaign, "beat", at + timedelta(hours=20))


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="`make test` installs chromium")
def test_marketer_creates_a_test_launches_it_and_reads_the_results(
    live_server, shop, marketer, tmp_path
):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("CAMPAIGN_SCREENSHOTS_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    admin = f"{live_server.url}/admin"

    # Given a signed-in marketer, who creates a campaign and gives it two variants
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            page.goto(f"{admin}/login/")
            page.fill("#id_username", "mia")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.goto(f"{admin}/campaigns/campaign/add/")
            page.select_option("#id_store", str(shop.store.pk))
            page.fill("#id_name", "Comeback: 10% off vs plain reminder")
            page.select_option("#id_trigger", "cart_abandoned")
            page.select_option("#id_channel", "email")
            page.fill("#id_variants-0-key", "control")
            page.fill("#id_variants-0-weight", "50")
            page.fill("#id_variants-1-key", "ten_off")
            page.fill("#id_variants-1-weight", "50")
            page.select_option("#id_variants-1-template_key", "comeback-10")
            page.fill("#id_variants-1-discount_percent", "10")
            page.fill("#id_holdout_percent", "10")
            page.click("input[name=_continue]")
            page.wait_for_selector("text=was added successfully")
            # the preview shows the variant's message rendered on its channel
            page.wait_for_selector("iframe[title='email html']")
            assert "Your cart misses you" in page.inner_text(".field-previews_panel")
            page.locator("fieldset:has(.variants-editor)").screenshot(
                path=str(shots / "campaign-variants.png")
            )

            # When they launch it with the button on the page
            page.click("button[value=launch]")
            page.wait_for_selector("text=Launch: now running")
        finally:
            browser.close()

    campaign = Campaign.objects.get(name="Comeback: 10% off vs plain reminder")
    assert campaign.status == CampaignStatus.RUNNING
    assert [v["key"] for v in campaign.variants] == ["control", "ten_off"]
    assert campaign.holdout_percent == 10.0
    assert campaign.changes.filter(action="launch", actor="mia").exists()
    simulate_ten_days(campaign)

    # Then, ten days on, they read the verdict, the table and the chart, and refresh it
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            page.goto(f"{admin}/login/")
            page.fill("#id_username", "mia")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.goto(f"{admin}/campaigns/campaign/")
            page.screenshot(path=str(shots / "campaign-list.png"))
            page.goto(f"{admin}/campaigns/campaign/{campaign.pk}/change/")
            panel = page.locator(".results-panel")
            assert "Verdict:" in panel.inner_text()
            assert "Sample ratio check: ok" in panel.inner_text()
            assert panel.locator("svg.lift-chart polyline").count() == 1
            page.click("button[value=refresh]")
            page.wait_for_selector("text=Results recomputed.")
            rows = page.locator(".results-table tbody tr").all_inner_texts()
            page.locator("fieldset:has(.results-panel)").screenshot(
                path=str(shots / "campaign-results.png")
            )
            page.locator(".campaign-commands").screenshot(path=str(shots / "campaign-buttons.png"))
        finally:
            browser.close()

    assert [row.split("\t")[0] for row in rows] == ["control", "ten_off", "holdout"]
    assert [row.split("\t")[1] for row in rows] == ["1800", "1800", "400"]
    for name in ("campaign-variants", "campaign-list", "campaign-results", "campaign-buttons"):
        assert (shots / f"{name}.png").stat().st_size > 1000

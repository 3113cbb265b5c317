"""The demo storefront in headless Chromium: an intervention arrives live, the shopper
clicks it, and the click is in the database."""

import io
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import call_command
from django.db import connections

from interventions.models import Intervention, Status
from stores.models import Store
from tests.support.processes import Daphne
from tracking.models import TrackingEvent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
# Playwright's own browser download does not work here; Debian's chromium does
# (installed by `make test`).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def demo_server(transactional_db):
    call_command("seed_demo", stdout=io.StringIO())
    server = Daphne(DEMO_STOREFRONT_ENABLED="1")
    Store.objects.filter(name="Demo Store").update(allowed_origins=[server.url])
    server.start()
    servers = [server]
    yield servers
    for running in servers:
        running.stop()


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    return condition()


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="`make test` installs chromium")
def test_shopper_sees_an_intervention_live_and_the_click_is_recorded(demo_server):
    from playwright.sync_api import sync_playwright

    server = demo_server[0]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{server.url}/demo/storefront/")
            page.wait_for_selector("body[data-connection=connected]")

            page.click("#abandon")
            cta = page.wait_for_selector(".ie-intervention .ie-cta")
            intervention_id = page.get_attribute(".ie-intervention", "data-intervention-id")
            cta.click()
        finally:
            browser.close()

    # Acks are written in batches (realtime/acks.py): the move to delivered may land a
    # moment after the click's own row.
    clicked = wait_for(
        lambda: (
            TrackingEvent.objects.filter(
                intervention_id=intervention_id, kind="clicked", source="websocket"
            ).exists()
            and Intervention.objects.filter(pk=intervention_id, status=Status.DELIVERED).exists()
        )
    )
    intervention = Intervention.objects.get(pk=intervention_id)
    assert clicked, server.output()
    assert intervention.status == Status.DELIVERED
    assert intervention.content["discount_code"] == "COMEBACK10"
    kinds = set(intervention.tracking_events.values_list("kind", flat=True))
    assert {"delivered", "displayed", "clicked"} <= kinds


def trigger_for(store: Store, shopper: str) -> Intervention:
    from interventions.actions import check_trigger_intervention

    try:
        intervention, _ = check_trigger_intervention(
            store,
            {
                "user_id": shopper,
                "channel": "websocket",
                "personalization": {"title": "While you were away", "cta": "Back"},
            },
        )
        return intervention
    finally:
        connections.close_all()  # this thread's connection would outlive the test database


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="`make test` installs chromium")
def test_storefront_reconnects_and_gets_what_was_sent_while_the_server_was_down(demo_server):
    from playwright.sync_api import sync_playwright

    server = demo_server[0]
    store = Store.objects.get(name="Demo Store")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{server.url}/demo/storefront/")
            page.wait_for_selector("body[data-connection=connected]")
            shopper = page.text_content("#shopper")

            server.stop()
            page.wait_for_selector("body[data-connection=closed]")
            # Playwright's sync API runs an event loop here; the ORM wants a plain thread.
            with ThreadPoolExecutor(1) as thread:
                missed = thread.submit(trigger_for, store, shopper).result()
            demo_server.append(Daphne(server.port, DEMO_STOREFRONT_ENABLED="1").start())

            page.wait_for_selector(f".ie-intervention[data-intervention-id='{missed.pk}']")
        finally:
            browser.close()

    assert wait_for(
        lambda: Intervention.objects.filter(pk=missed.pk, status=Status.DELIVERED).exists()
    )

"""The admin dashboard in headless Chromium, over `make run`'s demo data: a marketer logs
in, lands on the dashboard, and every chart is drawn with data points.

Screenshots go to the test's temporary directory; with DASHBOARD_SCREENSHOTS=docs/img they
replace the ones docs/analytics.md shows.
"""

import io
import json
import os
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command

from stores.actions import do_create_store
from stores.models import Store
from tests.realtime.test_storefront_browser import CHROMIUM, CHROMIUM_FLAGS
from tests.support.processes import ROOT, Daphne

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHARTS = ["revenue", "funnel", "channels", "campaigns", "failures", "suppressions", "live"]

# Per chart: [canvas id, data points drawn, non-zero ones] from Chart.js's own instances.
DRAWN = """() => Array.from(document.querySelectorAll("#dashboard canvas")).map((canvas) => {
  const chart = Chart.getChart(canvas);
  if (!chart) return [canvas.id, -1, -1];
  const values = chart.data.datasets.flatMap((dataset) => dataset.data);
  return [canvas.id, values.length, values.filter((value) => Number(value) > 0).length];
})"""


@pytest.fixture
def demo(transactional_db):
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    seeded = json.loads(out.getvalue().strip().splitlines()[-1])
    do_create_store(name="Second Shop")  # the superuser's menu has two; the marketer's none
    server = Daphne(DEMO_STOREFRONT_ENABLED="1")
    Store.objects.filter(name="Demo Store").update(allowed_origins=[server.url])
    server.start()
    yield seeded, server
    server.stop()


def screenshots_dir(tmp_path: Path) -> Path:
    wanted = os.environ.get("DASHBOARD_SCREENSHOTS")
    return (ROOT / wanted) if wanted else tmp_path


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="`make test` installs chromium")
def test_marketer_lands_on_a_dashboard_whose_charts_show_the_demo_history(demo, tmp_path):
    from playwright.sync_api import sync_playwright

    seeded, server = demo
    shots = screenshots_dir(tmp_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            # A shopper on the storefront: one live WebSocket connection to count.
            storefront = browser.new_page()
            storefront.set_default_timeout(20_000)
            storefront.goto(f"{server.url}/demo/storefront/")
            storefront.wait_for_selector("body[data-connection=connected]")

            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(20_000)
            page.goto(f"{server.url}/admin/login/?next=/admin/")
            page.fill("#id_username", seeded["marketer_user"])
            page.fill("#id_password", seeded["marketer_password"])
            page.click("input[type=submit]")
            page.wait_for_selector("body[data-dashboard=ready]")

            drawn = {canvas: (points, nonzero) for canvas, points, nonzero in page.evaluate(DRAWN)}
            live_tile = page.text_content("[data-tile=live] .dashboard-tile-value")
            store_shown = page.text_content(".dashboard-store")
            marketer_page = page.content()
            page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

            # A superuser picks the store; the demo admin sees the same demo figures.
            admin = browser.new_page(viewport={"width": 1400, "height": 900})
            admin.set_default_timeout(20_000)
            admin.goto(f"{server.url}/admin/login/?next=/admin/%3Fstore%3D{seeded['store_id']}")
            admin.fill("#id_username", seeded["admin_user"])
            admin.fill("#id_password", seeded["admin_password"])
            admin.click("input[type=submit]")
            admin.wait_for_selector("body[data-dashboard=ready]")
            picked = admin.eval_on_selector("select[name=store]", "s => s.selectedOptions[0].text")
            admin.screenshot(path=str(shots / "dashboard-superuser.png"))
        finally:
            browser.close()

    assert page.url == f"{server.url}/admin/", "the marketer lands on the dashboard"
    assert store_shown == "Demo Store"
    assert "Second Shop" not in marketer_page
    assert sorted(drawn) == sorted(f"chart-{name}" for name in CHARTS)
    for name in CHARTS:
        points, nonzero = drawn[f"chart-{name}"]
        assert points > 0, f"{name}: no data points"
        assert nonzero > 0, f"{name}: only zeros"
    assert int(live_tile.strip()) >= 1
    assert picked == "Demo Store"
    assert (shots / "dashboard.png").stat().st_size > 50_000

"""Links in message content are absolute http(s) URLs, on the store's hosts when set."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from interventions.models import Intervention

pytestmark = pytest.mark.django_db

CLIENT_JS = (
    Path(__file__).resolve().parents[2] / "realtime/static/interventions/intervention-client.js"
)
UNSAFE_LINKS = [
    "javascript:alert(document.cookie)",
    " JaVa\tScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "//evil.example/cart",
    "/cart",
    "https:///no-host",
]


def trigger(shop, **personalization):
    body = {"user_id": "sam", "channel": "websocket", "personalization": personalization}
    return shop.client.post("/api/v1/interventions", body, format="json")


@pytest.mark.parametrize("link", UNSAFE_LINKS)
def test_trigger_with_a_non_http_cta_url_is_a_400_naming_the_field(shop, link):
    response = trigger(shop, title="Your cart", cta_url=link)

    assert response.status_code == 400
    assert "personalization.cta_url" in response.json()["error"]["fields"]
    assert not Intervention.objects.exists()


def test_trigger_with_an_https_cta_url_delivers_it(shop):
    response = trigger(shop, title="Your cart", cta_url="https://shop.example/cart?c=1")

    assert response.status_code == 201, response.json()
    assert response.json()["content"]["cta_url"] == "https://shop.example/cart?c=1"


def test_other_url_fields_are_checked_too(shop):
    response = trigger(shop, image_url="javascript:alert(1)", help_link="https://shop.example")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["personalization.image_url"]


def test_content_url_hosts_limits_links_to_the_stores_domains(shop, settings):
    settings.CONTENT_URL_HOSTS = ["shop.example"]

    elsewhere = trigger(shop, cta_url="https://evil.example/cart")
    subdomain = trigger(shop, cta_url="https://www.shop.example/cart")

    assert elsewhere.status_code == 400
    assert "evil.example" in elsewhere.json()["error"]["fields"]["personalization.cta_url"][0]
    assert subdomain.status_code == 201


def test_batch_item_with_a_javascript_cta_url_is_refused_alone(shop):
    items = [
        {"user_id": "a", "channel": "websocket", "personalization": {"cta_url": "javascript:x"}},
        {"user_id": "b", "channel": "websocket", "personalization": {"cta_url": "https://s.io"}},
    ]

    response = shop.client.post(
        "/api/v1/interventions/batch", {"interventions": items}, format="json"
    )

    results = response.json()["results"]
    assert [r["status"] for r in results] == [400, 201]
    assert "personalization.cta_url" in results[0]["error"]["fields"]


def test_editing_content_to_a_javascript_link_is_a_400(shop):
    created = trigger(shop, title="Your cart").json()

    response = shop.client.patch(
        f"/api/v1/interventions/{created['id']}",
        {"content": {"title": "Your cart", "cta_url": "javascript:alert(1)"}},
        format="json",
    )

    assert response.status_code == 400
    assert "content.cta_url" in response.json()["error"]["fields"]


PUSH_WITH_LINK = {"en": {"push": {"body": "Your cart", "data": {"url": "{{ link }}"}}}}
LINK_VARIABLE = [{"name": "link", "type": "string", "default": "https://shop.example/cart"}]


def test_a_template_writing_a_javascript_link_is_refused_on_save(shop):
    content = {"en": {"push": {"body": "Your cart", "data": {"url": "javascript:alert(1)"}}}}

    response = shop.client.post(
        "/api/v1/templates", {"key": "k", "name": "K", "content": content}, format="json"
    )

    assert response.status_code == 400
    assert "content.en.push.data.url" in response.json()["error"]["fields"]


def test_a_template_rendering_a_javascript_link_is_refused_at_render_time(shop):
    created = shop.client.post(
        "/api/v1/templates",
        {"key": "k", "name": "K", "content": PUSH_WITH_LINK, "variables": LINK_VARIABLE},
        format="json",
    )
    assert created.status_code == 201, created.json()

    preview = shop.client.post(
        f"/api/v1/templates/{created.json()['id']}/preview",
        {"channel": "push", "context": {"link": "javascript:alert(1)"}},
        format="json",
    )

    assert preview.status_code == 400
    assert "http(s)" in preview.json()["error"]["fields"]["en.push.data.url"][0]


def click_cta(cta_url):
    """Render a WebSocket intervention in the real client (node, a minimal DOM) and click
    its button; returns where the page went."""
    script = """
    const vm = require("vm"), fs = require("fs");
    function element() {
      return { style: {}, children: [], setAttribute() {}, appendChild(c) { this.children.push(c); },
               removeChild() {} };
    }
    const window = { location: { href: "https://shop.example/cart" }, sessionStorage: null,
                     document: { createElement: element, body: element() } };
    vm.runInNewContext(fs.readFileSync(process.argv[1], "utf8"), { window, URL });
    const client = new window.InterventionClient({ url: "wss://engine.example/ws/user/u/" });
    const box = client.render({ id: "i-1", content: { title: "Cart", cta_url: JSON.parse(process.argv[2]) } });
    const find = (node) => node.className === "ie-cta" ? node : node.children.map(find).find(Boolean);
    find(box).onclick();
    process.stdout.write(window.location.href);
    """
    result = subprocess.run(
        ["node", "-e", script, str(CLIENT_JS), json.dumps(cta_url)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the JS client")
@pytest.mark.parametrize("link", UNSAFE_LINKS[:3])
def test_js_client_does_not_navigate_to_a_non_http_link(link):
    assert click_cta(link) == "https://shop.example/cart"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the JS client")
def test_js_client_navigates_to_an_https_link():
    assert click_cta("https://shop.example/checkout") == "https://shop.example/checkout"

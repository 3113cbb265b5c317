"""Recovery links: the cart link in every email, SMS and push goes through here, so a
click is recorded against the intervention that carried it before the shopper lands on
the store's cart page. The email open pixel too (docs/analytics.md)."""

import base64
from datetime import timedelta
from urllib.parse import quote

import structlog
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.utils import timezone

from config.errors import DATABASE_UNAVAILABLE, error_body
from interventions.models import Intervention
from stores.models import Store
from tracking.actions import do_record_tracking_event
from tracking.links import InvalidLink, read_open_pixel_token, read_recovery_token

logger = structlog.get_logger(__name__)


def recover(request: HttpRequest, token: str) -> HttpResponse:
    try:
        store_id, cart_id, intervention_id = read_recovery_token(token)
    except InvalidLink:
        return JsonResponse(
            error_body("invalid_link", "This link is invalid or has expired."), status=404
        )
    store = Store.objects.filter(pk=store_id).first()
    if store is None or not store.cart_url_template:
        logger.warning("recovery_link_without_cart_url", store_id=store_id)
        return JsonResponse(
            error_body("no_cart_url", "This store has not configured where its cart lives."),
            status=404,
        )
    intervention = (
        Intervention.objects.filter(store=store, pk=intervention_id).first()
        if intervention_id
        else None
    )
    if intervention is not None:
        do_record_tracking_event(
            intervention, "clicked", source="link", metadata={"channel": intervention.channel}
        )
    destination = store.cart_url_template.replace("{cart_id}", quote(cart_id, safe=""))
    return HttpResponseRedirect(destination)


# The smallest transparent GIF (43 bytes).
TRANSPARENT_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    """Always the same 1x1 GIF, whatever the token: a broken image in an email looks
    like a broken email, and an error would tell a prober which tokens are valid."""
    try:
        _record_open(token)
    except (OperationalError, InterfaceError) as exc:
        # PostgreSQL is down: this open is lost, but the email still looks whole.
        DATABASE_UNAVAILABLE.inc()
        logger.warning("open_pixel_not_recorded", reason="database_unavailable", error=str(exc))
    response = HttpResponse(TRANSPARENT_GIF, content_type="image/gif")
    # Every display should reach us, not a cache (dedupe decides what counts).
    response["Cache-Control"] = "no-store, private"
    return response


def _record_open(token: str) -> None:
    try:
        intervention_id, signed_before_sealing = read_open_pixel_token(token)
    except InvalidLink:
        return
    interventions = Intervention.objects.filter(pk=intervention_id)
    if signed_before_sealing:
        # Those tokens carry no issue time: the intervention's age stands in for it.
        interventions = interventions.filter(
            created_at__gte=timezone.now() - timedelta(days=settings.OPEN_PIXEL_MAX_AGE_DAYS)
        )
    intervention = interventions.first()
    if intervention is not None:
        do_record_tracking_event(
            intervention, "opened", source="pixel", metadata={"channel": intervention.channel}
        )

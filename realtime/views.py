"""HTTP side of real-time delivery: connection tokens, and the demo storefront.

``POST /api/v1/realtime/tokens`` lets a store's backend hand its storefront a short-lived
token instead of the API key (docs/websocket-protocol.md#authentication).
"""

import json
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import structlog
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import StrictSerializer
from config.errors import error_body
from interventions import actions as pipeline
from realtime import registry
from realtime.tokens import SCOPES, issue_token
from stores.auth import store_of
from stores.management.commands.seed_demo import DEMO_STORE_NAME
from stores.models import Store

logger = structlog.get_logger(__name__)


class TokenRequestSerializer(StrictSerializer):
    scope = serializers.ChoiceField(choices=SCOPES)
    user_id = serializers.CharField(required=False, max_length=200)
    ttl = serializers.IntegerField(
        required=False, min_value=10, help_text="Seconds; WS_TOKEN_MAX_TTL_SECONDS at most."
    )

    def validate_ttl(self, ttl: int) -> int:
        if ttl > settings.WS_TOKEN_MAX_TTL_SECONDS:
            raise serializers.ValidationError(
                f"Ensure this value is less than or equal to {settings.WS_TOKEN_MAX_TTL_SECONDS}."
            )
        return ttl

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["scope"] == "user" and not attrs.get("user_id"):
            raise serializers.ValidationError({"user_id": ["Required when scope is 'user'."]})
        if attrs["scope"] == "store" and attrs.get("user_id"):
            raise serializers.ValidationError({"user_id": ["Only a 'user' token names a user."]})
        return attrs


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()
    path = serializers.CharField(help_text="Where to connect, token included.")


def room_path(store_id: str, scope: str, user_id: str, token: str) -> str:
    room = f"/ws/store/{store_id}/" if scope == "store" else f"/ws/user/{quote(user_id, safe='')}/"
    return f"{room}?token={quote(token, safe='')}"


class RealtimeTokenView(APIView):
    @extend_schema(request=TokenRequestSerializer, responses={201: TokenSerializer})
    def post(self, request: Request) -> Response:
        """A short-lived token for one WebSocket room: the whole store, or one shopper."""
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        store = store_of(request)
        scope = serializer.validated_data["scope"]
        user_id = serializer.validated_data.get("user_id", "")
        token, expires_at = issue_token(
            str(store.pk), scope, user_id, serializer.validated_data.get("ttl")
        )
        body = {
            "token": token,
            "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
            "path": room_path(str(store.pk), scope, user_id, token),
        }
        return Response(body, status=status.HTTP_201_CREATED)


class ConnectionSerializer(serializers.Serializer):
    scope = serializers.CharField()
    user_id = serializers.CharField(allow_blank=True)
    instance = serializers.CharField(help_text="host:pid of the server process holding it.")
    connected_at = serializers.DateTimeField()
    last_seen = serializers.DateTimeField(help_text="Last activity (refreshed every heartbeat).")


class RealtimeConnectionsView(APIView):
    @extend_schema(responses={200: ConnectionSerializer(many=True)})
    def get(self, request: Request) -> Response:
        """The store's live WebSocket connections, on every server process."""
        listing = registry.connections(str(store_of(request).pk))
        rows = [
            {
                "scope": entry.get("scope", ""),
                "user_id": entry.get("user_id", ""),
                "instance": entry.get("instance", ""),
                "connected_at": datetime.fromtimestamp(entry.get("connected_at", 0), tz=UTC),
                "last_seen": datetime.fromtimestamp(entry["last_seen"], tz=UTC),
            }
            for entry in listing
        ]
        return Response(ConnectionSerializer(rows, many=True).data)


# --- Demo storefront (DEMO_STOREFRONT_ENABLED; on in `make run`) -------------

DEMO_SHOPPER_COOKIE = "demo_shopper"


def _demo_store() -> Store:
    if not settings.DEMO_STOREFRONT_ENABLED:
        raise Http404("The demo storefront is disabled (DEMO_STOREFRONT_ENABLED).")
    store = Store.objects.filter(name=DEMO_STORE_NAME).first()
    if store is None:
        raise Http404("No demo store: run `python manage.py seed_demo`.")
    return store


@require_GET
def demo_storefront(request: HttpRequest) -> HttpResponse:
    store = _demo_store()
    user_id = request.COOKIES.get(DEMO_SHOPPER_COOKIE) or f"demo-{secrets.token_hex(4)}"
    token, _ = issue_token(str(store.pk), "user", user_id, ttl=3600)
    response = render(
        request,
        "realtime/demo_storefront.html",
        {"store": store, "user_id": user_id, "token": token, "ws_base": settings.PUBLIC_WS_URL},
    )
    response.set_cookie(DEMO_SHOPPER_COOKIE, user_id, max_age=86400, samesite="Lax")
    return response


@require_POST
def demo_abandon_cart(request: HttpRequest) -> HttpResponse:
    """Simulate the store's backend reporting an abandoned cart for this page's shopper."""
    store = _demo_store()
    user_id = request.COOKIES.get(DEMO_SHOPPER_COOKIE, "")
    if not user_id:
        return JsonResponse(
            error_body("invalid", "Load /demo/storefront/ first: it names the shopper."),
            status=400,
        )
    cart_id = f"demo-cart-{secrets.token_hex(4)}"
    intervention, _ = pipeline.check_trigger_intervention(
        store,
        {
            "user_id": user_id,
            "cart_id": cart_id,
            "channel": "websocket",
            "template": "",
            "personalization": {
                "title": "Still thinking it over?",
                "body": "Your cart is waiting. Here is 10% off if you check out in the next hour.",
                "cta": "Complete my order",
                "discount_code": "COMEBACK10",
            },
        },
        idempotency_key="",
    )
    # The websocket send ran on commit, after this object was read.
    intervention.refresh_from_db(fields=["status", "status_reason"])
    logger.info("demo_cart_abandoned", intervention_id=str(intervention.pk), user_id=user_id)
    return HttpResponse(
        json.dumps(
            {
                "intervention_id": str(intervention.pk),
                "status": intervention.status,
                "reason": intervention.status_reason,
            }
        ),
        content_type="application/json",
    )

"""WebSocket routes (docs/websocket-protocol.md)."""

from django.urls import URLPattern

websocket_urlpatterns: list[URLPattern] = []

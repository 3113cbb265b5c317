"""WebSocket routes (docs/websocket-protocol.md)."""

import gc

from django.conf import settings
from django.urls import URLPattern, re_path

from realtime.consumers import StoreRoomConsumer, UserRoomConsumer

STORE_ID = r"(?P<store_id>[0-9a-fA-F-]{36})"

websocket_urlpatterns: list[URLPattern] = [
    re_path(rf"^ws/store/{STORE_ID}/$", StoreRoomConsumer.as_asgi()),
    re_path(r"^ws/user/(?P<user_id>[^/]{1,200})/$", UserRoomConsumer.as_asgi()),
]

if settings.WS_GC_FREEZE:
    # Thousands of long-lived consumers make each full collection walk every object the
    # process loaded at start-up: freezing them, and collecting less often, removed the
    # p99 spikes GC pauses caused (docs/benchmarks.md#real-time).
    gc.freeze()
    gc.set_threshold(*settings.WS_GC_THRESHOLDS)

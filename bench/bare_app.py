"""The bare Channels app issue 12 compares the engine against, in one file.

    daphne -b 127.0.0.1 -p 18191 bare_app:application      (cwd bench/)

`POST /trigger` with `{"user_id": ..., "personalization": {...}}`: one row INSERT, one
`group_send` to the shopper's room, 201. `/ws/user/<id>/`: joins the room and forwards
`intervention` frames in the engine's frame shape, so the same client measures both.
What it leaves out is what the engine is for: no API key, no throttle, no validation, no
decision, no history or attempt rows, no replay stream, no acks (an ack frame is read and
dropped). Same channel layer (RedisPubSubChannelLayer), same daphne, same PostgreSQL,
and a connection pool like the engine's (`BARE_POOL_MAX_SIZE`, 5 by default).
"""

import json
import os
import uuid

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["channels"],
    MIDDLEWARE=[],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("BARE_DB", "ie_realtime_bench"),
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": 5432,
            # A pool (psycopg_pool, through Django's own option), as any production app
            # on PostgreSQL has: Django under ASGI otherwise opens a connection per
            # request (its connections are per request context), which costs a backend
            # start per trigger and, at 100/s, more connections than PostgreSQL allows.
            # Django returns the connection to the pool at the end of each request.
            "CONN_MAX_AGE": 0,
            "OPTIONS": {
                "pool": {
                    "min_size": 2,
                    "max_size": int(os.environ.get("BARE_POOL_MAX_SIZE", "5")),
                    "timeout": 10.0,
                }
            },
        }
    },
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/2")],
                "prefix": "bare",
            },
        }
    },
    USE_TZ=True,
    ASGI_APPLICATION=f"{__name__}.application",
)
django.setup(set_prefix=False)

from asgiref.sync import async_to_sync  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

TABLE = (
    "CREATE TABLE IF NOT EXISTS bare_trigger (id uuid PRIMARY KEY, user_id text NOT NULL, "
    "content jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
)


@csrf_exempt
def trigger(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body)
    trigger_id = uuid.uuid4()
    content = body.get("personalization") or {}
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO bare_trigger (id, user_id, content) VALUES (%s, %s, %s)",
            [trigger_id, body["user_id"], json.dumps(content)],
        )
    frame = {
        "type": "intervention",
        "messageId": str(trigger_id),
        "payload": {"id": str(trigger_id), "content": content},
    }
    async_to_sync(get_channel_layer().group_send)(
        f"user.{body['user_id']}", {"type": "frame", "text": json.dumps(frame)}
    )
    return JsonResponse({"id": str(trigger_id)}, status=201)


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


class ShopperConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.room = f"user.{self.scope['url_route']['kwargs']['user_id']}"
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()
        await self.send(json.dumps({"type": "config", "payload": {}}))

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.room, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        pass  # acks: the bare app keeps no delivery state

    async def frame(self, message: dict) -> None:
        await self.send(message["text"])


urlpatterns = [path("trigger", trigger), path("health", health)]

with connection.cursor() as cursor:
    cursor.execute(TABLE)
connection.close()

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter([path("ws/user/<str:user_id>/", ShopperConsumer.as_asgi())]),
    }
)

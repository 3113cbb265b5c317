"""ASGI entry point: HTTP through Django, WebSocket through Channels consumers."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from config.handlers import (  # noqa: E402
    ThreadPoolASGIHandler,
    cache_twisted_content_type_parsing,
    plain_autobahn_log_arguments,
)

cache_twisted_content_type_parsing()
plain_autobahn_log_arguments()

django_asgi_app = ThreadPoolASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Serves /static/ (the storefront's intervention-client.js) from the app
        # directories, so the one daphne process is enough; a CDN may front it.
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

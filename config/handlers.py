"""Django's ASGI handler, serving each HTTP request wholly in a pool thread.

Django's own ASGI handler runs the middleware chain in async mode, so every classic
middleware method and every sync view is handed to one shared thread
(``thread_sensitive=True``): requests queue behind each other's database waits, and
each request pays a dozen thread hand-offs. Measured here: ~55 requests/s and 15 ms of
CPU per trigger, a third of it in asgiref.

This handler loads the middleware in sync mode and runs ``get_response`` (middleware,
view, rendering) for each request in a thread of the event loop's pool, the way a
threaded WSGI server would: one hand-off per request, database waits overlap, and each
request keeps one thread (and one database connection from the pool) from start to
finish. WebSocket consumers are untouched. Pool size: ``ASGI_THREADS`` (asgiref).

Load shedding at the door: past ``MAX_IN_FLIGHT_REQUESTS`` requests in this process
(from the moment the server hands one over until its answer is sent), a request is
answered 503 with ``Retry-After`` and the JSON error body from the event loop itself,
before its body is read and before Django's ``request_started`` and ``response.close``
hops to asgiref's one shared thread: a saturated process otherwise queues requests for
seconds there, the 503s with them, and the callers' retries pile on (measured:
docs/benchmarks.md, stop 17). Health probes and metrics scrapes are never shed: an
overload is when ``engine_requests_shed_total`` matters most. A request whose client hangs
up while it waits for a thread never runs (Django cancels it on ``http.disconnect``, and
the pool drops work not yet started).
"""

import functools
import json
from typing import Any

import structlog
from autobahn import util as autobahn_util
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase
from prometheus_client import Counter
from twisted.web import http as twisted_http

from config.errors import error_body

logger = structlog.get_logger(__name__)

REQUESTS_SHED = Counter(
    "engine_requests_shed_total", "HTTP requests answered 503 at once: the process was saturated"
)
NEVER_SHED = ("/health", "/metrics")
SHED_BODY = json.dumps(
    error_body("overloaded", "The server is busy; retry after the delay given.")
).encode()


def cache_twisted_content_type_parsing() -> None:
    """Parse each distinct POST Content-Type once, not once per request.

    ``twisted.web.http.Request.requestReceived`` builds a stdlib ``EmailMessage`` for every
    POST to learn whether the body is a form (~45 µs of CPU; issue 12's profile found it
    under daphne's share). daphne never reads the decoded form, and a service sends the
    same one or two Content-Types all day, so a small LRU in front of Twisted's parser
    answers them from memory; odd values only churn the 64 entries. Twisted looks the
    function up as a module global at call time, so replacing it there is enough.
    """
    if not hasattr(twisted_http._parseContentType, "cache_info"):
        twisted_http._parseContentType = functools.lru_cache(maxsize=64)(
            twisted_http._parseContentType
        )


def plain_autobahn_log_arguments() -> None:
    """Stop autobahn colouring the arguments of debug lines nobody logs.

    autobahn calls ``self.log.debug(..., func=hltype(...), peer=hlval(...))`` for every
    frame it reads or sends; the arguments are built before the logger drops the line, so
    no log level avoids them, and each goes through ``click.style`` (~8 µs a frame read
    and sent, ~1 % of daphne's samples under issue 12's bench). Colours are for a
    terminal, and this process logs JSON: without click, autobahn's ``hl`` returns the
    text as it is (5.5 µs saved of the 8).
    """
    autobahn_util._HAS_CLICK = False


class ThreadPoolASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        # Only the event loop's thread touches it: no lock needed.
        self.in_flight = 0

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Django enters a ThreadSensitiveContext per request so that one request's
        # thread-sensitive code never waits for another's: asgiref starts a thread for the
        # request when its `request_started` receivers run and joins it after
        # `response.close()`, ~0.5 ms of CPU per trigger (issue 12, stop 17). Here the
        # request's own code runs wholly in a pool thread (get_response_async); what is
        # still thread-sensitive is those two signal sends, whose receivers (reset_queries,
        # close_old_connections, close_caches, reset_urlconf) take microseconds, so they
        # share asgiref's one long-lived sync thread instead. Nothing else of the
        # engine's runs there: consumers and ack batches use thread_sensitive=False.
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.in_flight >= settings.MAX_IN_FLIGHT_REQUESTS and not scope["path"].startswith(
            NEVER_SHED
        ):
            await self.overloaded(scope, send)
            return
        self.in_flight += 1
        try:
            await super().handle(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        # database_sync_to_async returns the thread's connection to the pool afterwards.
        respond: Any = database_sync_to_async(self.get_response, thread_sensitive=False)
        response: HttpResponseBase = await respond(request)
        return response

    async def overloaded(self, scope: dict[str, Any], send: Any) -> None:
        """The 503 sent straight to the server: no request object, no middleware, no
        thread; the unread body is the server's to discard."""
        REQUESTS_SHED.inc()
        logger.warning("request_shed", path=scope["path"], in_flight=self.in_flight)
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"Content-Type", b"application/json"),
                    (b"Retry-After", b"1"),
                    (b"Content-Length", str(len(SHED_BODY)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": SHED_BODY})

"""Verified API keys, remembered for a few seconds per process (issue 12).

Verifying a key is a SELECT of the key joined to its store plus a SHA-512 check: ~10 %
of a web process's CPU per trigger under load. A process now keeps what it verified (the
key row and its store, by the SHA-256 of the presented key) for ``API_KEY_CACHE_SECONDS``.

Revocation stays immediate. Every change that can take access away or change what the
store's requests decide with (revoking or deleting a key, editing or deleting a store in
the admin) goes through ``announce_access_changed``: it empties this process's memory at
once and, after commit, PUBLISHes on ``ie:api-keys:changed``, and every web process's
listener thread empties its own on receipt (one message, sub-millisecond on one Redis).
Pub/sub delivers at most once, so a process uses its memory only while its listener is
subscribed: before the first subscription, and from the moment the connection breaks
until it is back (and the memory emptied again), every request verifies in PostgreSQL,
as before. What is left is a change made around the application (SQL by hand, a shell
``.update()`` with no announce): that reaches the API within the TTL, 5 s by default.
"""

import copy
import hashlib
import threading
import time
from typing import Any

import redis
import structlog
from django.conf import settings
from django.db import transaction
from prometheus_client import Counter

from stores.models import StoreApiKey

logger = structlog.get_logger(__name__)

CHANNEL = "ie:api-keys:changed"
LISTENER_RETRY_SECONDS = 1.0

KEY_LOOKUPS = Counter(
    "engine_api_key_lookups_total",
    "API keys presented, by whether the process's memory answered",
    ["source"],
)
LOOKUP_FROM_MEMORY = KEY_LOOKUPS.labels(source="memory")
LOOKUP_FROM_DATABASE = KEY_LOOKUPS.labels(source="database")
LISTENER_ERRORS = Counter(
    "engine_api_key_listener_errors_total",
    "Times the API-key revocation listener lost Redis (memory bypassed until it is back)",
)


class VerifiedKeys:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[bytes, tuple[float, StoreApiKey]] = {}
        self.listening = False
        self.listener: threading.Thread | None = None

    def get(self, digest: bytes) -> StoreApiKey | None:
        if not self.listening:
            self.start_listener()
            return None
        entry = self.entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, digest: bytes, api_key: StoreApiKey, ttl: float) -> None:
        if not self.listening:
            return
        with self.lock:
            if len(self.entries) > 10_000:  # keys are few; this bounds a flood of bad ones
                self.entries.clear()
            self.entries[digest] = (time.monotonic() + ttl, api_key)

    def clear(self) -> None:
        with self.lock:
            self.entries = {}

    def start_listener(self) -> None:
        with self.lock:
            if self.listener is not None and self.listener.is_alive():
                return
            self.listener = threading.Thread(
                target=self.listen, name="api-key-revocations", daemon=True
            )
            self.listener.start()

    def listen(self) -> None:
        while True:
            try:
                client = redis.Redis.from_url(
                    settings.REDIS_URL,
                    socket_connect_timeout=2,
                    socket_timeout=10,
                    health_check_interval=5,
                )
                pubsub = client.pubsub()
                pubsub.subscribe(CHANNEL)
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    # A (re)subscription may have missed messages: start from empty.
                    self.clear()
                    if message["type"] == "subscribe":
                        self.listening = True
            except Exception as exc:  # any failure: stop trusting memory, retry
                self.listening = False
                self.clear()
                LISTENER_ERRORS.inc()
                logger.warning("api_key_listener_lost_redis", error=str(exc))
                time.sleep(LISTENER_RETRY_SECONDS)


VERIFIED = VerifiedKeys()


def verify_api_key(key: str) -> StoreApiKey:
    """The usable key ``key`` names, with its store; raises StoreApiKey.DoesNotExist."""
    ttl = settings.API_KEY_CACHE_SECONDS
    digest = hashlib.sha256(key.encode()).digest()
    if ttl > 0:
        remembered = VERIFIED.get(digest)
        if remembered is not None:
            LOOKUP_FROM_MEMORY.inc()
            return remembered
    api_key = StoreApiKey.objects.get_from_key(key)
    assert isinstance(api_key, StoreApiKey)
    LOOKUP_FROM_DATABASE.inc()
    if ttl > 0:
        VERIFIED.put(digest, private_copy(api_key), ttl)
    return api_key


def private_copy(api_key: StoreApiKey) -> StoreApiKey:
    """Each request its own instances: concurrent requests never share a mutable Store."""
    mine = copy.copy(api_key)
    mine.store = copy.copy(api_key.store)
    return mine


def announce_access_changed() -> None:
    """Forget verified keys here now, and in every web process once this commits."""
    VERIFIED.clear()
    transaction.on_commit(_publish_change)


def _publish_change() -> None:
    # A fresh connection: revocations are rare, and this module sits below the pooled
    # clients of the real-time package.
    VERIFIED.clear()
    if settings.API_KEY_CACHE_SECONDS <= 0:
        return  # no process remembers keys (embedded mode has no Redis to publish on)
    try:
        client: Any = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2
        )
        client.publish(CHANNEL, "changed")
        client.close()
    except redis.RedisError as exc:
        # The listeners lost Redis too, so they are not using their memory: nothing stale.
        logger.error("api_key_change_not_published", error=str(exc))

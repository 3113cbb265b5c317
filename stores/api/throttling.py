"""Request rates: per API key once authenticated, per client address before that.

Counters live in Redis, shared by every web process: one fixed window per caller and
period. A fixed window lets a caller burst up to twice the rate across a window boundary;
the limits are about runaway clients, not exact quotas.

Each process counts in memory and adds its count to Redis (one INCRBY) at most every
``FLUSH_SECONDS`` per caller, and on every request once the caller is within
``EXACT_ABOVE`` of its limit, so a caller far below its rate costs no Redis round trip
per request (issue 12: the per-request SET NX/INCR was ~10 % of the web process's CPU
under load, most of it a new Redis connection per request, because Django's cache
handler is per request context). The price: another process's requests reach this one's
estimate up to ``FLUSH_SECONDS`` late, which matters only near the limit, where counting
is exact again.
"""

import math
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import structlog
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError
from rest_framework import throttling
from rest_framework.request import Request

from realtime.redis_clients import sync_redis

logger = structlog.get_logger(__name__)

PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@cache
def parse_rate(rate: str) -> tuple[int, int] | None:
    """'100/s', '6000/min', '10/hour' → (requests, seconds); '' or '0' → no limit."""
    if rate.strip() in ("", "0"):
        return None
    count, _, period = rate.partition("/")
    try:
        requests, seconds = int(count), PERIOD_SECONDS[period.strip()[:1]]
    except (ValueError, KeyError):
        raise ImproperlyConfigured(
            f"Rate {rate!r} is not '<requests>/<s|min|hour|day>', e.g. '6000/min'."
        ) from None
    return requests, seconds


class FixedWindowThrottle(throttling.BaseThrottle):
    scope = ""

    def __init__(self) -> None:
        self.retry_after = 0

    def identify(self, request: Request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request: Request, view: Any) -> bool:
        limit = parse_rate(settings.API_THROTTLE_RATES.get(self.scope, ""))
        caller = self.identify(request)
        if limit is None or caller is None:
            return True
        requests, seconds = limit
        now = time.time()
        window = int(now // seconds)
        key = f"throttle:{self.scope}:{caller}:{window}"
        try:
            count = COUNTS.count(key, seconds, requests)
        except RedisError as exc:
            # Redis down must not take the API down with it (docs/operations.md: the API
            # keeps accepting and the sweeper catches up): unthrottled until it returns.
            logger.warning("throttle_unavailable", scope=self.scope, error=str(exc))
            return True
        self.retry_after = math.ceil((window + 1) * seconds - now)
        return count <= requests

    def wait(self) -> float:
        return max(self.retry_after, 1)


FLUSH_SECONDS = 0.1
EXACT_ABOVE = 0.8  # share of the limit past which every request is counted in Redis
KEY_PREFIX = "ie"


@dataclass
class WindowCount:
    seen: int = 0  # the shared total Redis last answered
    pending: int = 0  # this process's requests not yet added to it
    flushed_at: float = float("-inf")


class WindowCounts:
    """This process's view of every caller's count in the current windows."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.windows: dict[str, WindowCount] = {}

    def count(self, key: str, seconds: int, limit: int) -> int:
        """The caller's count in this window, this request included."""
        now = time.monotonic()
        with self.lock:
            window = self.windows.get(key)
            if window is None:
                if len(self.windows) > 10_000:
                    self.forget_stale(now)
                window = self.windows[key] = WindowCount()
            window.pending += 1
            estimate = window.seen + window.pending
            if settings.EMBEDDED or (
                now - window.flushed_at < FLUSH_SECONDS and estimate < limit * EXACT_ABOVE
            ):
                # Embedded mode is one process without Redis: its own count is exact.
                return estimate
            pending, window.pending, window.flushed_at = window.pending, 0, now
        try:
            pipe = sync_redis().pipeline(transaction=False)
            # The key outlives its window by a second so a late INCRBY never recreates it
            # unbounded; NX keeps the first expiry.
            pipe.set(f"{KEY_PREFIX}:{key}", 0, ex=seconds + 1, nx=True)
            pipe.incrby(f"{KEY_PREFIX}:{key}", pending)
            total = int(pipe.execute()[1])
        except RedisError:
            with self.lock:
                window.pending += pending
                window.flushed_at = float("-inf")
            raise
        with self.lock:
            window.seen = max(window.seen, total)
            return total + window.pending

    def forget_stale(self, now: float) -> None:
        # Windows last counted a while ago are over (the longest period is a day, but
        # callers that many are per-address guesses whose counts matter for seconds).
        self.windows = {
            k: w for k, w in self.windows.items() if now - w.flushed_at < 60 or w.pending
        }


COUNTS = WindowCounts()


class ApiKeyThrottle(FixedWindowThrottle):
    """Every request made with one API key, whichever process serves it."""

    scope = "api_key"

    def identify(self, request: Request) -> str | None:
        api_key = getattr(request.user, "api_key", None)
        return None if api_key is None else str(api_key.prefix)


class UnauthenticatedThrottle(FixedWindowThrottle):
    """Requests without a valid key, per client address (NUM_PROXIES says which one)."""

    scope = "unauthenticated"

    def identify(self, request: Request) -> str | None:
        return str(self.get_ident(request))

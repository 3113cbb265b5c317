"""Redis clients for the real-time package, sized for connect storms.

redis-py's async pool defaults to 100 connections and raises ``MaxConnectionsError``
beyond it; a blocking pool of ``REDIS_MAX_CONNECTIONS`` makes a storm wait instead.
Async clients are per event loop: a client bound to one loop cannot be awaited from
another (pytest-asyncio and ``async_to_sync`` each run their own loops).
"""

import asyncio
from functools import cache
from weakref import WeakKeyDictionary

import redis
import redis.asyncio as aioredis
from django.conf import settings

SOCKET_TIMEOUT_SECONDS = 2.0
POOL_WAIT_SECONDS = 5.0

_async_clients: "WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis]" = WeakKeyDictionary()


@cache
def sync_redis() -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.REDIS_MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
    )
    return redis.Redis(connection_pool=pool)


def async_redis() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=settings.REDIS_MAX_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        )
        client = aioredis.Redis(connection_pool=pool)
        _async_clients[loop] = client
    return client

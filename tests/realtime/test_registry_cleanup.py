"""The connection registry cleans up any number of stale entries in one consistent step."""

import time

import pytest

from realtime import registry
from realtime.redis_clients import sync_redis

pytestmark = pytest.mark.django_db


async def test_a_connect_after_thousands_of_stale_entries_is_admitted_and_leaves_no_orphans():
    store_id = "4b7c1c9e-0000-0000-0000-00000000cafe"
    conns, info, _ = registry._keys(store_id, "")
    long_ago = time.time() - 3600
    client = sync_redis()
    client.delete(conns, info)
    # Server restarts leave entries nobody removes; 9,000 of them broke the cleanup.
    stale = {f"dead-{n}": long_ago for n in range(9000)}
    client.zadd(conns, stale)
    client.hset(info, mapping=dict.fromkeys(stale, "{}"))

    outcome = await registry.register(store_id, "store", "", "live-1", limit=10)

    assert outcome == registry.ADMITTED
    assert client.zrange(conns, 0, -1) == [b"live-1"]
    assert client.hkeys(info) == [b"live-1"]
    client.delete(conns, info)

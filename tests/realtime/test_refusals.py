"""Refusals a browser can act on: every close code is one daphne can actually send."""

import pytest

from realtime import protocol, redis_clients
from tests.realtime.conftest import refusal_code, room_url

pytestmark = pytest.mark.django_db(transaction=True)

CLOSE_CODES = {name: value for name, value in vars(protocol).items() if name.startswith("CLOSE_")}


@pytest.mark.parametrize("name", sorted(CLOSE_CODES))
def test_close_codes_are_ones_daphne_can_send(name):
    # autobahn (under daphne) raises on any other code and the client sees no code at all.
    code = CLOSE_CODES[name]
    assert code == 1000 or 3000 <= code <= 4999, f"{name} = {code}"


async def test_unreachable_registry_asks_the_client_to_retry_later(
    storefront, settings, monkeypatch
):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    monkeypatch.setattr(redis_clients, "_async_clients", type(redis_clients._async_clients)())

    code = await refusal_code(room_url(storefront.store.pk))

    assert code == protocol.CLOSE_TRY_AGAIN_LATER

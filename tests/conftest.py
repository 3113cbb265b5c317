import pytest
from rest_framework.test import APIClient

from stores.actions import do_create_store
from stores.models import Store


class StoreSession:
    """A store and an API client authenticated with its key."""

    def __init__(self, store: Store, api_key: str):
        self.store = store
        self.api_key = api_key
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")


@pytest.fixture
def shop(db) -> StoreSession:
    store, key = do_create_store(name="Acme Outdoor", timezone="Europe/Paris")
    return StoreSession(store, key)


@pytest.fixture
def other_shop(db) -> StoreSession:
    store, key = do_create_store(name="Rival Goods", timezone="America/New_York")
    return StoreSession(store, key)

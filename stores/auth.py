"""`Authorization: Api-Key <key>`: the key names the store every request acts for."""

from typing import Any

import structlog
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from stores.api.throttling import UnauthenticatedThrottle
from stores.api_keys import verify_api_key
from stores.models import Store, StoreApiKey

logger = structlog.get_logger(__name__)

KEYWORD = "Api-Key"


class StoreClient:
    """The authenticated caller: a service acting for one store."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: StoreApiKey):
        self.api_key = api_key
        self.store: Store = api_key.store

    def __str__(self) -> str:
        return f"store:{self.store.pk}"


class StoreApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[StoreClient, StoreApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            check_unauthenticated_rate(request)
            return None
        scheme, _, key = header.partition(" ")
        if scheme != KEYWORD or not key.strip():
            check_unauthenticated_rate(request)
            raise exceptions.AuthenticationFailed(
                f"Send the key as 'Authorization: {KEYWORD} <key>'."
            )
        try:
            api_key = verify_api_key(key.strip())
        except StoreApiKey.DoesNotExist:
            logger.info("api_key_rejected", prefix=key.strip().partition(".")[0][:8])
            check_unauthenticated_rate(request)
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.") from None
        assert isinstance(api_key, StoreApiKey)
        if api_key.has_expired:
            raise exceptions.AuthenticationFailed("This API key has expired.")
        return StoreClient(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


def check_unauthenticated_rate(request: Request) -> None:
    """Count a request without a valid key against its address; 429 past the rate.

    Done here, where the key is decided: DRF checks permissions before throttles, so a
    request without a valid key would be refused before any throttle counted it, and
    guessing keys would be unlimited.
    """
    throttle = UnauthenticatedThrottle()
    if not throttle.allow_request(request, None):
        raise exceptions.Throttled(throttle.wait())


class IsStoreClient(permissions.BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, StoreClient)


def store_of(request: Request) -> Store:
    client = request.user
    if not isinstance(client, StoreClient):
        raise exceptions.NotAuthenticated()
    return client.store


def actor_of(request: Request) -> str:
    """Who made an API change, for audit rows: the key's name."""
    api_key = request.auth
    return f"api key: {api_key.name}" if isinstance(api_key, StoreApiKey) else "api"

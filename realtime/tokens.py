"""Short-lived signed connection tokens (docs/websocket-protocol.md#authentication).

A browser must never hold the store's API key, so the store's backend exchanges its key
for a token naming one store and one room (the whole store, or one shopper), valid for
``ttl`` seconds. Tokens are signed with ``SECRET_KEY`` and need no database or Redis
lookup to check, which keeps connect storms off Postgres.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core import signing

SALT = "realtime.token"
SCOPES = ("store", "user")


@dataclass(frozen=True)
class RoomClaim:
    store_id: str
    scope: str
    user_id: str
    expires_at: int


class TokenRefused(Exception):
    """The token does not open this room; ``problem`` is missing | invalid | expired | mismatch."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


def issue_token(
    store_id: str, scope: str, user_id: str = "", ttl: int | None = None
) -> tuple[str, datetime]:
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}")
    if scope == "user" and not user_id:
        raise ValueError("a user token names its user_id")
    ttl = ttl or settings.WS_TOKEN_DEFAULT_TTL_SECONDS
    expires_at = int(time.time()) + ttl
    token = signing.dumps(
        {"s": str(store_id), "c": scope, "u": user_id if scope == "user" else "", "e": expires_at},
        salt=SALT,
    )
    return token, datetime.fromtimestamp(expires_at, tz=UTC)


def check_token(token: str, scope: str, store_id: str = "", user_id: str = "") -> RoomClaim:
    """The claim if ``token`` opens exactly this room now, else ``TokenRefused``.

    A user room's URL names only the shopper; its store is the token's (``store_id=""``).
    """
    if not token:
        raise TokenRefused("missing")
    try:
        claims = signing.loads(token, salt=SALT)
        claim = RoomClaim(
            store_id=str(claims["s"]),
            scope=str(claims["c"]),
            user_id=str(claims["u"]),
            expires_at=int(claims["e"]),
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise TokenRefused("invalid") from None
    if claim.expires_at <= time.time():
        raise TokenRefused("expired")
    if (
        claim.scope != scope
        or (store_id and claim.store_id != str(store_id))
        or (scope == "user" and claim.user_id != user_id)
    ):
        raise TokenRefused("mismatch")
    return claim

"""Where a webhook may go: never to this network's own machines (SSRF), unless
WEBHOOK_ALLOW_PRIVATE_TARGETS says so (tests, development).

Checked when an endpoint is saved and again before every send, since a name can be made
to resolve elsewhere later; the send connects to the address it checked (``pin_target``),
not to the name. Redirects are never followed (outbound.sender).
"""

import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from django.conf import settings


class TargetRefused(Exception):
    """The URL is not one the engine will post to; the message says why."""


def check_target(url: str) -> None:
    """The URL's shape, and unless WEBHOOK_ALLOW_PRIVATE_TARGETS, every address its host
    resolves to now (when an endpoint is saved)."""
    parts = _checked_parts(url)
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        _check_addresses(_resolve(parts.hostname or "", _port(parts)))


def pin_target(url: str) -> str:
    """Resolve the host once, check every address, and return the one to connect to: the
    sender connects to it, not to the name, so a name re-pointed between the check and
    the connection (DNS rebinding) cannot move the post onto this network."""
    parts = _checked_parts(url)
    addresses = _resolve(parts.hostname or "", _port(parts))
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        _check_addresses(addresses)
    return addresses[0]


def _checked_parts(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise TargetRefused("Only http and https URLs are allowed.")
    if not parts.hostname:
        raise TargetRefused("The URL has no host.")
    if parts.username or parts.password:
        raise TargetRefused("Credentials in the URL are not allowed; the signature authenticates.")
    return parts


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _resolve(hostname: str, port: int) -> list[str]:
    """The addresses in the resolver's order (the first is the one a client would try)."""
    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    except (OSError, ValueError) as error:
        raise TargetRefused(f"The host does not resolve: {error}.") from error
    if not addresses:
        raise TargetRefused("The host does not resolve.")
    return addresses


def _check_addresses(addresses: list[str]) -> None:
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if not ip.is_global or ip.is_multicast:
            raise TargetRefused(
                f"The host resolves to {ip}, a private, loopback or reserved address."
            )

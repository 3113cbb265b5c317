"""Where a webhook may go: never to this network's own machines (SSRF), unless
WEBHOOK_ALLOW_PRIVATE_TARGETS says so (tests, development).

Checked when an endpoint is saved and again before every send, since a name can be made
to resolve elsewhere later. Redirects are never followed (outbound.sender).
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class TargetRefused(Exception):
    """The URL is not one the engine will post to; the message says why."""


def check_target(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise TargetRefused("Only http and https URLs are allowed.")
    if not parts.hostname:
        raise TargetRefused("The URL has no host.")
    if parts.username or parts.password:
        raise TargetRefused("Credentials in the URL are not allowed; the signature authenticates.")
    if settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(parts.hostname, port)}
    except (OSError, ValueError) as error:
        raise TargetRefused(f"The host does not resolve: {error}.") from error
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise TargetRefused(
                f"The host resolves to {ip}, a private, loopback or reserved address."
            )

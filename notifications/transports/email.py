"""Email through django-anymail: the ESP is whichever ``EMAIL_BACKEND`` settings chose
(SendGrid, Amazon SES, Mailgun, Postmark…), the quirks stay inside anymail.

Every message carries ``List-Unsubscribe`` with the one-click POST of RFC 8058, so
Gmail and Yahoo show their unsubscribe button (they require it of bulk senders) and
a click lands on ``notifications.views.unsubscribe``.
"""

import requests
import structlog
from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from prometheus_client import Counter

from notifications.links import unsubscribe_url
from notifications.ratelimit import acquire_send_slot
from notifications.transports.base import OutboundMessage, Transport, TransportError

logger = structlog.get_logger(__name__)

POSTMARK_API_URL = "https://api.postmarkapp.com/"

EMAIL_SENDS = Counter(
    "engine_email_sends_total", "Emails handed to the ESP by outcome", ["esp", "outcome"]
)


class AnymailEmailTransport(Transport):
    channel = "email"
    name = "anymail"

    def send(self, message: OutboundMessage) -> str:
        esp = settings.EMAIL_ESP
        if not isinstance(message.recipient, str) or not message.recipient:
            raise TransportError("no email address", permanent=True, reason="no_address")
        acquire_send_slot("email", esp)
        content = message.content
        link = unsubscribe_url(message.store_id, message.recipient)
        email = EmailMultiAlternatives(
            subject=content.get("subject", ""),
            body=content.get("text", ""),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.recipient],
            headers={
                "List-Unsubscribe": f"<{link}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            connection=get_connection(settings.EMAIL_BACKEND),
        )
        if content.get("html"):
            email.attach_alternative(content["html"], "text/html")
        # Comes back in every tracking webhook: how a bounce finds its intervention
        # even if the ESP's message id format differs from the send response's.
        email.metadata = {"intervention_id": message.intervention_id}  # type: ignore[attr-defined]
        email.tags = ["cart-recovery"]  # type: ignore[attr-defined]
        try:
            email.send()
        except AnymailRecipientsRefused as error:
            EMAIL_SENDS.labels(esp, "refused").inc()
            logger.warning("email_refused", intervention_id=message.intervention_id, esp=esp)
            raise TransportError(
                str(error), permanent=True, reason="recipient_refused", suppress_address=True
            ) from error
        except AnymailAPIError as error:
            status = error.status_code
            # No status: the request never got an answer (timeout, connection reset).
            permanent = status is not None and 400 <= status < 500 and status != 429
            EMAIL_SENDS.labels(esp, "permanent_error" if permanent else "transient_error").inc()
            logger.warning(
                "email_send_failed",
                intervention_id=message.intervention_id,
                esp=esp,
                status=status,
                permanent=permanent,
            )
            raise TransportError(
                f"{esp} answered {status}: {error}",
                permanent=permanent,
                reason=f"esp_{status or 'unreachable'}",
            ) from error
        except AnymailError as error:
            # Anything else anymail refuses (unsupported feature, bad address) is in the
            # message itself: retrying cannot help.
            EMAIL_SENDS.labels(esp, "permanent_error").inc()
            raise TransportError(str(error), permanent=True, reason="invalid_message") from error
        status = email.anymail_status  # type: ignore[attr-defined]
        EMAIL_SENDS.labels(esp, "sent").inc()
        return str(status.message_id or "")

    def find_sent(self, intervention_id: str) -> str | None:
        """Postmark can search sent messages by the metadata we attach to each one; the
        other ESPs' event searches lag by minutes and match on other keys, so they are
        not asked (an unconfirmed send stays for their webhooks to settle)."""
        if settings.EMAIL_ESP != "postmark":
            return None
        api_url = settings.ANYMAIL.get("POSTMARK_API_URL", POSTMARK_API_URL)
        try:
            response = requests.get(
                f"{api_url.rstrip('/')}/messages/outbound",
                params={"count": "1", "offset": "0", "metadata_intervention_id": intervention_id},
                headers={
                    "Accept": "application/json",
                    "X-Postmark-Server-Token": settings.ANYMAIL.get("POSTMARK_SERVER_TOKEN", ""),
                },
                timeout=10,
            )
            response.raise_for_status()
            found = response.json().get("Messages") or []
        except (requests.RequestException, ValueError) as error:
            logger.warning("email_lookup_failed", intervention_id=intervention_id, error=str(error))
            return None
        if not found:
            return None
        return str(found[0].get("MessageID") or "") or None

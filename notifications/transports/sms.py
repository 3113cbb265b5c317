"""SMS through the Twilio SDK (Messages API), with a status callback per message.

Error codes (https://www.twilio.com/docs/api/errors) that mean "this number will
never work" are permanent and suppress the address: retrying them only costs money
and, for 21610, breaks carrier opt-out rules.
"""

from functools import cached_property
from typing import Any

import requests
import structlog
from django.conf import settings
from prometheus_client import Counter
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from notifications.ratelimit import acquire_send_slot
from notifications.segments import count_segments
from notifications.transports.base import OutboundMessage, Transport, TransportError

logger = structlog.get_logger(__name__)

SMS_SENDS = Counter("engine_sms_sends_total", "SMS handed to Twilio by outcome", ["outcome"])

# The number is dead for us: suppress it.
SUPPRESSING_ERROR_CODES = {
    21211: "invalid_number",  # 'To' number is not a valid phone number
    21610: "unsubscribed",  # recipient replied STOP to this sender
    21612: "unreachable_number",  # Twilio cannot route to this number
    21614: "not_mobile",  # 'To' is not a mobile number (landline)
    21217: "invalid_number",  # phone number does not appear to be valid
    30003: "unreachable_number",  # delivery: handset unreachable / unknown
    30004: "blocked",  # delivery: message blocked by the recipient or carrier
    30005: "invalid_number",  # delivery: unknown destination handset
    30006: "not_mobile",  # delivery: landline or unreachable carrier
}
# The message, not the number, is the problem: permanent, but keep the address.
PERMANENT_ERROR_CODES = {
    21408: "region_not_enabled",  # geo permissions do not allow this country
    21606: "invalid_sender",  # 'From' is not a Twilio number of this account
    21617: "body_too_long",  # concatenated body exceeds 1600 characters
    30007: "filtered_as_spam",  # carrier filtering
}


TWILIO_API_ORIGIN = "https://api.twilio.com"


class TwilioApiClient(TwilioHttpClient):
    """The SDK's HTTP client, sending to ``TWILIO_API_BASE_URL`` instead of Twilio's own
    origin when that is set: the custom ``HttpClient`` Twilio documents for pointing the
    SDK at a mock server (the test suite's stub provider speaks the Messages API)."""

    def __init__(self, base_url: str, timeout: float):
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if self.base_url != TWILIO_API_ORIGIN and url.startswith(TWILIO_API_ORIGIN):
            url = self.base_url + url.removeprefix(TWILIO_API_ORIGIN)
        return super().request(method, url, *args, **kwargs)


def status_callback_url(intervention_id: str) -> str:
    # Our id rides along: if the worker died before it saw Twilio's MessageSid, the
    # callback still finds (and settles) the unconfirmed intervention.
    return f"{settings.PUBLIC_BASE_URL}/webhooks/twilio/status/?intervention={intervention_id}"


class TwilioSmsTransport(Transport):
    channel = "sms"
    name = "twilio"

    @cached_property
    def client(self) -> Client:
        return Client(
            settings.TWILIO_ACCOUNT_SID,
            settings.TWILIO_AUTH_TOKEN,
            http_client=TwilioApiClient(settings.TWILIO_API_BASE_URL, settings.TWILIO_TIMEOUT),
        )

    def send(self, message: OutboundMessage) -> str:
        if not isinstance(message.recipient, str) or not message.recipient:
            raise TransportError("no phone number", permanent=True, reason="no_address")
        body = str(message.content.get("body", ""))
        segments = count_segments(body)
        if not body or segments.segments > settings.SMS_MAX_SEGMENTS:
            SMS_SENDS.labels("too_long").inc()
            raise TransportError(
                f"{segments.segments} segments ({segments.encoding}) over the limit of "
                f"{settings.SMS_MAX_SEGMENTS}",
                permanent=True,
                reason="sms_too_long" if body else "empty_body",
            )
        acquire_send_slot("sms", self.name)
        sender = (
            {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
            if settings.TWILIO_MESSAGING_SERVICE_SID
            else {"from_": settings.TWILIO_FROM_NUMBER}
        )
        try:
            sent = self.client.messages.create(
                to=message.recipient,
                body=body,
                status_callback=status_callback_url(message.intervention_id),
                **sender,
            )
        except TwilioRestException as error:
            raise self._classify(error, message) from error
        except requests.RequestException as error:
            SMS_SENDS.labels("unreachable").inc()
            logger.warning(
                "sms_send_unreachable", intervention_id=message.intervention_id, error=str(error)
            )
            raise TransportError(
                f"Twilio unreachable: {error}", reason="twilio_unreachable"
            ) from error
        SMS_SENDS.labels("sent").inc()
        logger.info(
            "sms_sent",
            intervention_id=message.intervention_id,
            message_sid=sent.sid,
            segments=segments.segments,
            encoding=segments.encoding,
        )
        return str(sent.sid)

    def _classify(self, error: TwilioRestException, message: OutboundMessage) -> TransportError:
        code = int(error.code or 0)
        if code in SUPPRESSING_ERROR_CODES:
            outcome, permanent, suppress = SUPPRESSING_ERROR_CODES[code], True, True
        elif code in PERMANENT_ERROR_CODES:
            outcome, permanent, suppress = PERMANENT_ERROR_CODES[code], True, False
        else:
            # 429 / 20429 (too many requests) and 5xx are worth another try; any
            # other 4xx is a request Twilio will refuse again.
            transient = error.status == 429 or error.status >= 500
            outcome, permanent, suppress = f"twilio_{code or error.status}", not transient, False
        SMS_SENDS.labels("permanent_error" if permanent else "transient_error").inc()
        logger.warning(
            "sms_send_failed",
            intervention_id=message.intervention_id,
            twilio_code=code,
            status=error.status,
            reason=outcome,
        )
        return TransportError(
            f"Twilio {error.status} code {code}: {error.msg}",
            permanent=permanent,
            reason=outcome,
            suppress_address=suppress,
        )

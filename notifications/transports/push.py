"""Push through firebase-admin (FCM HTTP v1): ``send_each``, one request per device token.

Only this transport learns which tokens of a multicast are dead (UNREGISTERED,
SENDER_ID_MISMATCH, a malformed token), so it deactivates those devices itself.
QUOTA_EXCEEDED and FCM outages are transient; FCM's Retry-After becomes
``retry_after``.
"""

import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import firebase_admin
import structlog
from django.conf import settings
from firebase_admin import credentials, exceptions, messaging
from prometheus_client import Counter

from notifications.models import Device
from notifications.ratelimit import acquire_send_slot
from notifications.transports.base import OutboundMessage, Transport, TransportError

logger = structlog.get_logger(__name__)

PUSH_RESULTS = Counter(
    "engine_push_results_total", "FCM answers per device token by outcome", ["outcome"]
)
APP_NAME = "intervention-engine"


def firebase_app() -> firebase_admin.App:
    try:
        return firebase_admin.get_app(APP_NAME)
    except ValueError:
        return firebase_admin.initialize_app(
            credentials.Certificate(settings.FCM_CREDENTIALS_FILE),
            options={"httpTimeout": settings.FCM_TIMEOUT},
            name=APP_NAME,
        )


def is_dead_token(error: Exception) -> bool:
    if isinstance(error, messaging.UnregisteredError | messaging.SenderIdMismatchError):
        return True
    # INVALID_ARGUMENT also covers a malformed payload; only a bad token kills the device.
    return (
        isinstance(error, exceptions.InvalidArgumentError)
        and "registration token" in str(error).lower()
    )


def retry_after_of(error: Exception) -> float | None:
    response = getattr(error, "http_response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value else None
    except ValueError:
        return None


class FcmPushTransport(Transport):
    channel = "push"
    name = "fcm"

    @cached_property
    def app(self) -> firebase_admin.App:
        return firebase_app()

    def send(self, message: OutboundMessage) -> str:
        tokens = [message.recipient] if isinstance(message.recipient, str) else message.recipient
        tokens = [token for token in tokens if token]
        if not tokens:
            raise TransportError("no active device", permanent=True, reason="no_device")
        acquire_send_slot("push", self.name)
        try:
            batch = messaging.send_each(fcm_messages(message, tokens), app=self.app)
        except exceptions.FirebaseError as error:
            PUSH_RESULTS.labels("request_failed").inc()
            raise TransportError(
                f"FCM request failed: {error}", reason="fcm_unreachable"
            ) from error
        outcome = sort_responses(tokens, batch.responses)
        if outcome.dead:
            Device.objects.filter(store_id=message.store_id, token__in=outcome.dead).update(
                active=False
            )
            logger.info(
                "push_tokens_deactivated",
                intervention_id=message.intervention_id,
                count=len(outcome.dead),
            )
        if outcome.message_ids:
            logger.info(
                "push_sent",
                intervention_id=message.intervention_id,
                delivered_to=len(outcome.message_ids),
                failed=len(outcome.dead) + len(outcome.transient),
            )
            return outcome.message_ids[0]
        raise outcome.error()


def fcm_messages(message: OutboundMessage, tokens: list[str]) -> list[messaging.Message]:
    """One FCM message per device token, with our intervention id in the data."""
    content = message.content
    data: dict[str, Any] = {str(k): str(v) for k, v in (content.get("data") or {}).items()}
    # Lets the app report opens back against the right intervention.
    data["intervention_id"] = message.intervention_id
    notification = messaging.Notification(
        title=content.get("title") or None, body=content.get("body") or None
    )
    # Apps register FCM registration tokens, which go in ``token``; firebase-admin 7
    # deprecates it in favour of installation ids (``fid``), which our clients do not send.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [
            messaging.Message(token=token, notification=notification, data=data) for token in tokens
        ]


@dataclass
class PushOutcome:
    """FCM's answers for one multicast, sorted per token."""

    message_ids: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    transient: list[Exception] = field(default_factory=list)

    def error(self) -> TransportError:
        """Why nothing was delivered: worth a retry if any token failed transiently."""
        if self.transient:
            delays = [d for d in (retry_after_of(e) for e in self.transient) if d is not None]
            return TransportError(
                f"FCM: {self.transient[0]}",
                retry_after=max(delays) if delays else None,
                reason="fcm_quota"
                if any(isinstance(e, messaging.QuotaExceededError) for e in self.transient)
                else "fcm_unavailable",
            )
        return TransportError("every device token is dead", permanent=True, reason="no_live_device")


def sort_responses(tokens: list[str], responses: list[messaging.SendResponse]) -> PushOutcome:
    """Sent, dead token or transient, per token; a refused message fails the whole send
    (every token would refuse it)."""
    outcome = PushOutcome()
    for token, response in zip(tokens, responses, strict=True):
        if response.success:
            outcome.message_ids.append(response.message_id)
            PUSH_RESULTS.labels("sent").inc()
        elif response.exception is not None and is_dead_token(response.exception):
            outcome.dead.append(token)
            PUSH_RESULTS.labels("dead_token").inc()
        elif isinstance(response.exception, exceptions.InvalidArgumentError):
            PUSH_RESULTS.labels("invalid_message").inc()
            raise TransportError(
                f"FCM refused the message: {response.exception}",
                permanent=True,
                reason="invalid_message",
            )
        else:
            outcome.transient.append(response.exception or Exception("unknown FCM error"))
            PUSH_RESULTS.labels("transient_error").inc()
    return outcome

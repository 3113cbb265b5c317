"""Anymail's normalized tracking events (any ESP) → tracking events and opt-outs.

Only the configured ESP's endpoint is routed (``notifications.views.anymail_tracking``),
and only with its own credential set (``notifications.esp_webhooks``); anymail then
verifies it before it sends the ``tracking`` signal. This receiver is the adapter from
that signal to ``notifications.actions``.
"""

from typing import Any

import structlog
from anymail.signals import AnymailTrackingEvent

from interventions import actions as engine
from notifications import actions
from notifications.esp_webhooks import ESP_OF_ANYMAIL_NAME, webhook_is_authenticated
from notifications.views import WEBHOOK_REJECTIONS

logger = structlog.get_logger(__name__)

# anymail event_type → (tracking kind, failure reason, suppression reason)
EVENT_EFFECTS: dict[str, tuple[str, str, str]] = {
    "delivered": ("delivered", "", ""),
    "opened": ("opened", "", ""),
    "clicked": ("clicked", "", ""),
    # anymail's "bounced" is a hard (permanent) bounce; soft ones arrive as "deferred".
    "bounced": ("bounced", "email_bounced", "hard_bounce"),
    "complained": ("complained", "", "complaint"),
    "rejected": ("failed", "email_rejected", ""),
    "failed": ("failed", "email_failed", ""),
    "unsubscribed": ("unsubscribed", "", ""),
}
# Rejections that say the address itself is bad, not the content.
SUPPRESSING_REJECT_REASONS = frozenset({"bounced", "invalid", "unsubscribed", "spam"})


def is_machine_open(esp_name: str, event: AnymailTrackingEvent) -> bool:
    """Whether the ESP says a privacy proxy (Apple Mail Privacy Protection and the like),
    not a person, loaded the pixel. anymail does not normalize this, so it is read from
    the ESP's raw payload (``esp_event``). Postmark and Amazon SES do not say (Postmark
    documents MPP opens as inflated opens): their opens count as human."""
    if event.event_type != "opened" or not isinstance(event.esp_event, dict):
        return False
    esp = ESP_OF_ANYMAIL_NAME.get(esp_name, "")
    if esp == "sendgrid":
        # SendGrid's open event carries "sg_machine_open": true for proxy prefetches.
        return event.esp_event.get("sg_machine_open") in (True, "true")
    if esp == "mailgun":
        # Mailgun's event-data.client-info.bot names the proxy ("apple", "gmail"); empty
        # for a person.
        client_info = (event.esp_event.get("event-data") or {}).get("client-info") or {}
        return bool(client_info.get("bot"))
    return False


def on_tracking(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
    # notifications.views.anymail_tracking already refuses these; checked again here so
    # that anymail's own URLs, if ever included again, cannot feed forged events in.
    if not webhook_is_authenticated(ESP_OF_ANYMAIL_NAME.get(esp_name, "")):
        WEBHOOK_REJECTIONS.labels("anymail", "no_secret_configured").inc()
        logger.warning("anymail_webhook_ignored_unauthenticated", esp=esp_name)
        return
    effect = EVENT_EFFECTS.get(event.event_type or "")
    if effect is None:
        return  # queued, sent, deferred, autoresponded: no change for the intervention
    kind, failure_reason, suppress_reason = effect
    if event.event_type == "rejected" and event.reject_reason in SUPPRESSING_REJECT_REASONS:
        suppress_reason = f"rejected_{event.reject_reason}"
    metadata = {"esp": esp_name, "event_type": event.event_type}
    if event.reject_reason:
        metadata["reject_reason"] = event.reject_reason
    if event.click_url:
        metadata["url"] = event.click_url
    intervention = engine.do_record_provider_event(
        channel="email",
        provider_message_id=event.message_id or "",
        intervention_id=str((event.metadata or {}).get("intervention_id", "")),
        kind=kind,
        source="email_webhook",
        occurred_at=event.timestamp,
        metadata=metadata,
        failure_reason=failure_reason,
        suppress_reason=suppress_reason,
        machine=is_machine_open(esp_name, event),
    )
    if event.event_type in ("unsubscribed", "complained") and intervention is not None:
        email = event.recipient or intervention.shopper.email
        if email:
            actions.do_unsubscribe_email(intervention.store_id, email)

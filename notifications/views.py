"""Provider webhooks and the one-click unsubscribe endpoint (docs/notifications.md).

Adapters only: verify, translate, call one action. Unknown or old message ids still
answer 200 so providers stop retrying.
"""

from collections.abc import Callable

import structlog
from anymail.webhooks.amazon_ses import AmazonSESTrackingWebhookView
from anymail.webhooks.mailgun import MailgunTrackingWebhookView
from anymail.webhooks.postmark import PostmarkTrackingWebhookView
from anymail.webhooks.sendgrid import SendGridTrackingWebhookView
from django.conf import settings
from django.db import transaction
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    HttpResponseNotFound,
)
from django.utils.html import format_html
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST
from prometheus_client import Counter
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from interventions import actions as engine
from notifications import actions
from notifications.esp_webhooks import webhook_is_authenticated
from notifications.transports.sms import SUPPRESSING_ERROR_CODES

logger = structlog.get_logger(__name__)

WEBHOOK_REJECTIONS = Counter(
    "engine_webhook_rejections_total", "Webhook requests refused", ["webhook", "reason"]
)


def twilio_signature_is_valid(request: HttpRequest) -> bool:
    """Twilio signs the public URL it called plus the POST parameters with our auth
    token; behind a proxy the request's own host differs, so sign against PUBLIC_BASE_URL."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not settings.TWILIO_AUTH_TOKEN:
        return False
    url = f"{settings.PUBLIC_BASE_URL}{request.get_full_path()}"
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    return bool(validator.validate(url, request.POST.dict(), signature))


def _forbidden(webhook: str) -> HttpResponse:
    WEBHOOK_REJECTIONS.labels(webhook, "bad_signature").inc()
    logger.warning("webhook_signature_rejected", webhook=webhook)
    return HttpResponseForbidden("Invalid signature.")


@csrf_exempt
@require_POST
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    if not twilio_signature_is_valid(request):
        return _forbidden("twilio_inbound")
    with transaction.atomic():
        if not _first_delivery("twilio_inbound", request.POST.get("MessageSid", "")):
            # A replayed STOP after the shopper's START would opt them out again.
            return HttpResponse(str(MessagingResponse()), content_type="application/xml")
        reply = actions.do_handle_sms_keyword(
            phone=request.POST.get("From", ""),
            body=request.POST.get("Body", ""),
            help_text=settings.SMS_HELP_TEXT,
        )
    twiml = MessagingResponse()
    if reply:
        twiml.message(reply)
    return HttpResponse(str(twiml), content_type="application/xml")


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    if not twilio_signature_is_valid(request):
        return _forbidden("twilio_status")
    status = request.POST.get("MessageStatus", "")
    raw_code = request.POST.get("ErrorCode", "")
    # Twilio's codes are numeric; anything else is kept as seen, never a 500.
    code: int | str = int(raw_code) if raw_code.isdigit() else raw_code
    sid = request.POST.get("MessageSid", "")
    metadata: dict[str, object] = {"status": status}
    if code:
        metadata["error_code"] = code
    intervention_id = request.GET.get("intervention", "")
    with transaction.atomic():
        # Keyed on the status too: delivered after undelivered is news, not a replay.
        if status in ("delivered", "undelivered", "failed") and _first_delivery(
            "twilio_status", f"{sid}:{status}" if sid else ""
        ):
            _record_sms_status(sid, status, code, metadata, intervention_id)
    # queued / sending / sent: nothing the intervention does not already know.
    return HttpResponse(status=200)


def _first_delivery(webhook: str, key: str) -> bool:
    """Twilio signs no timestamp, so a captured request can be replayed at will; each
    key is applied once (``notifications.models.WebhookReceipt``). No key, no memory."""
    if not key or actions.do_claim_webhook_receipt(webhook, key):
        return True
    WEBHOOK_REJECTIONS.labels(webhook, "replay").inc()
    logger.info("webhook_replay_ignored", webhook=webhook, key=key)
    return False


def _record_sms_status(
    sid: str, status: str, code: int | str, metadata: dict[str, object], intervention_id: str
) -> None:
    if status == "delivered":
        engine.do_record_provider_event(
            channel="sms",
            provider_message_id=sid,
            intervention_id=intervention_id,
            kind="delivered",
            source="sms_webhook",
            metadata=metadata,
        )
    elif status in ("undelivered", "failed"):
        engine.do_record_provider_event(
            channel="sms",
            provider_message_id=sid,
            intervention_id=intervention_id,
            kind="failed",
            source="sms_webhook",
            metadata=metadata,
            failure_reason=f"sms_{status}" + (f"_{code}" if code else ""),
            suppress_reason=SUPPRESSING_ERROR_CODES.get(code, "") if isinstance(code, int) else "",
        )


# Only tracking: we neither receive mail nor use the other ESPs anymail supports.
ESP_TRACKING_VIEWS: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "postmark": PostmarkTrackingWebhookView.as_view(),
    "sendgrid": SendGridTrackingWebhookView.as_view(),
    "amazon_ses": AmazonSESTrackingWebhookView.as_view(),
    "mailgun": MailgunTrackingWebhookView.as_view(),
}


@csrf_exempt
@require_http_methods(["POST", "HEAD"])  # some ESPs probe the URL with HEAD when it is set up
def anymail_tracking(request: HttpRequest, esp: str) -> HttpResponse:
    """The configured ESP's tracking webhook, and no other: an ESP we do not send through
    has no business reporting bounces, and its scheme may be the one left unconfigured."""
    if esp != settings.EMAIL_ESP or esp not in ESP_TRACKING_VIEWS:
        raise Http404
    if not webhook_is_authenticated(esp):
        WEBHOOK_REJECTIONS.labels("anymail", "no_secret_configured").inc()
        logger.warning("anymail_webhook_refused_unconfigured", esp=esp)
        return HttpResponseForbidden("This webhook has no credential configured.")
    return ESP_TRACKING_VIEWS[esp](request)


UNSUBSCRIBE_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>Unsubscribe</title></head>
<body style="font-family:sans-serif;max-width:32rem;margin:3rem auto">{body}</body></html>"""


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """RFC 8058: mail clients POST ``List-Unsubscribe=One-Click`` without cookies or a
    CSRF token. GET only shows a button, because link scanners and previews follow GETs."""
    try:
        store, email = actions.access_unsubscribe_link(token)
    except actions.InvalidUnsubscribeLink:
        WEBHOOK_REJECTIONS.labels("unsubscribe", "bad_token").inc()
        return HttpResponseNotFound("This unsubscribe link is not valid.")
    if request.method == "POST":
        actions.do_unsubscribe_email(store.pk, email)
        body = format_html("<p>{} will not receive these emails any more.</p>", email)
        return HttpResponse(UNSUBSCRIBE_PAGE.format(body=body))
    body = format_html(
        '<form method="post"><p>Stop cart reminder emails to {}?</p>'
        '<button type="submit">Unsubscribe</button></form>',
        email,
    )
    return HttpResponse(UNSUBSCRIBE_PAGE.format(body=body))

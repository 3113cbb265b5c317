"""`manage.py check` names a real provider selected without its credentials, instead
of the first send crashing in a worker."""

import os
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from notifications.esp_webhooks import webhook_credential
from notifications.transports.base import TRANSPORT_ALIASES

ESP_CREDENTIALS = {
    "sendgrid": ("SENDGRID_API_KEY",),
    "mailgun": ("MAILGUN_API_KEY", "MAILGUN_SENDER_DOMAIN"),
    "postmark": ("POSTMARK_SERVER_TOKEN",),
    "amazon_ses": (),  # boto3 finds credentials in AWS_* variables or the instance role
}

# ANYMAIL setting → (environment variable, how to fill it in)
WEBHOOK_CREDENTIAL_VARIABLES = {
    "WEBHOOK_SECRET": (
        "ANYMAIL_WEBHOOK_SECRET",
        "Set it to 'user:random-password' and put it in the ESP's webhook URL "
        "(https://user:password@host/webhooks/anymail/<esp>/tracking/).",
    ),
    "MAILGUN_WEBHOOK_SIGNING_KEY": (
        "MAILGUN_WEBHOOK_SIGNING_KEY",
        "Set it to the HTTP webhook signing key shown in Mailgun's dashboard.",
    ),
}


def _selected(channel: str) -> str:
    path = settings.NOTIFICATION_TRANSPORTS.get(channel, "log")
    return TRANSPORT_ALIASES.get(path, path)


@register("notifications")
def check_provider_credentials(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:  # noqa: C901 - one branch per provider and setting
    problems: list[CheckMessage] = []
    if _selected("email").endswith("AnymailEmailTransport"):
        if settings.EMAIL_ESP not in ESP_CREDENTIALS:
            problems.append(
                Error(
                    f"EMAIL_ESP={settings.EMAIL_ESP!r} is not one of {', '.join(ESP_CREDENTIALS)}.",
                    id="notifications.E001",
                )
            )
        for name in ESP_CREDENTIALS.get(settings.EMAIL_ESP, ()):
            if not settings.ANYMAIL.get(name):
                problems.append(
                    Error(
                        f"EMAIL_TRANSPORT=anymail with EMAIL_ESP={settings.EMAIL_ESP} needs {name}.",
                        hint=f"Set {name} in the environment, or EMAIL_TRANSPORT=log.",
                        id="notifications.E002",
                    )
                )
        credential = webhook_credential(settings.EMAIL_ESP)
        if credential and not settings.ANYMAIL.get(credential):
            variable, hint = WEBHOOK_CREDENTIAL_VARIABLES[credential]
            problems.append(
                Warning(
                    f"{variable} is empty: the {settings.EMAIL_ESP} tracking webhook refuses "
                    "every request (unauthenticated, anyone could post fake bounces).",
                    hint=hint,
                    id="notifications.W001",
                )
            )
    if _selected("sms").endswith("TwilioSmsTransport"):
        for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
            if not getattr(settings, name):
                problems.append(
                    Error(f"SMS_TRANSPORT=twilio needs {name}.", id="notifications.E003")
                )
        if not settings.TWILIO_FROM_NUMBER and not settings.TWILIO_MESSAGING_SERVICE_SID:
            problems.append(
                Error(
                    "SMS_TRANSPORT=twilio needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID.",
                    id="notifications.E004",
                )
            )
    if _selected("push").endswith("FcmPushTransport"):
        path = settings.FCM_CREDENTIALS_FILE
        if not path or not os.path.isfile(path):
            problems.append(
                Error(
                    "PUSH_TRANSPORT=fcm needs FCM_CREDENTIALS_FILE, the path of a service "
                    f"account JSON file (got {path!r}).",
                    id="notifications.E005",
                )
            )
    return problems

"""Which credential authenticates each ESP's tracking webhook (docs/notifications.md).

Anymail accepts a basic-auth-only webhook with no ``WEBHOOK_SECRET`` (it only warns),
and its Mailgun view falls back to the API key, or an empty signing key, which anyone
can sign with. So each ESP is accepted only with its own scheme configured: one ESP's
credential never vouches for another's endpoint.
"""

from django.conf import settings

# EMAIL_ESP → the ANYMAIL setting its tracking webhook is verified with.
WEBHOOK_CREDENTIALS = {
    "postmark": "WEBHOOK_SECRET",  # basic auth in the webhook URL: Postmark does not sign
    "sendgrid": "WEBHOOK_SECRET",
    "amazon_ses": "WEBHOOK_SECRET",  # anymail does not verify SNS signatures yet
    "mailgun": "MAILGUN_WEBHOOK_SIGNING_KEY",  # HMAC over timestamp + token in the body
}
# anymail's ``esp_name`` on the tracking signal → EMAIL_ESP
ESP_OF_ANYMAIL_NAME = {
    "Postmark": "postmark",
    "SendGrid": "sendgrid",
    "Amazon SES": "amazon_ses",
    "Mailgun": "mailgun",
}


def webhook_credential(esp: str) -> str:
    return WEBHOOK_CREDENTIALS.get(esp, "")


def webhook_is_authenticated(esp: str) -> bool:
    """True when ``esp`` is the configured ESP and its own webhook credential is set."""
    credential = webhook_credential(esp)
    return esp == settings.EMAIL_ESP and bool(credential and settings.ANYMAIL.get(credential))

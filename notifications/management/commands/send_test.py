"""Send one message through the configured provider, for operators setting up credentials:

    python manage.py send_test --channel sms --to +15551234567 --template cart-reminder \
        --store <store id>

Without --template a fixed test text is sent. Prints the provider's message id.
"""

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.transports.base import OutboundMessage, TransportError, get_transport
from stores.models import Store
from templates.context import sample_context
from templates.rendering import CHANNEL_FIELDS, RenderError, render_message

FIXED_CONTENT: dict[str, dict[str, Any]] = {
    "email": {
        "subject": "Test from the intervention engine",
        "text": "If you can read this, email delivery is configured.",
        "html": "<p>If you can read this, email delivery is configured.</p>",
    },
    "sms": {"body": "Test from the intervention engine: SMS delivery is configured."},
    "push": {"title": "Test", "body": "Push delivery is configured.", "data": {}},
    "websocket": {"title": "Test", "body": "WebSocket delivery is configured."},
}


class Command(BaseCommand):
    help = "Send one test message through the configured provider of a channel."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--channel", required=True, choices=list(CHANNEL_FIELDS))
        parser.add_argument(
            "--to", required=True, help="Email, E.164 phone, push token or user id."
        )
        parser.add_argument("--template", default="", help="Template key (needs --store).")
        parser.add_argument("--store", default="", help="Store id owning the template.")
        parser.add_argument("--locale", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        channel: str = options["channel"]
        store_id = options["store"]
        content: dict[str, Any] = FIXED_CONTENT[channel]
        if options["template"]:
            store = Store.objects.filter(pk=store_id).first() if store_id else None
            if store is None:
                raise CommandError("--template needs --store <store id>.")
            try:
                _, content = render_message(
                    store.pk,
                    options["template"],
                    channel,
                    sample_context(store.name),
                    options["locale"],
                )
            except RenderError as error:
                raise CommandError(f"The template does not render: {error}") from error
        transport = get_transport(channel)
        message = OutboundMessage(
            intervention_id=f"send-test-{uuid.uuid4()}",
            store_id=str(store_id or ""),
            channel=channel,
            recipient=options["to"],
            content=content,
        )
        try:
            message_id = transport.send(message)
        except TransportError as error:
            kind = "permanent" if error.permanent else "transient"
            raise CommandError(
                f"{transport.name} refused ({kind}, {error.reason}): {error}"
            ) from error
        self.stdout.write(
            json.dumps({"transport": transport.name, "provider_message_id": message_id})
        )

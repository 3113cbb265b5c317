import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from stores.actions import do_create_store


class Command(BaseCommand):
    help = 'Create a store and an API key; prints {"store_id": ..., "api_key": ...}.'

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--timezone", default="UTC")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            store, key = do_create_store(name=options["name"], timezone=options["timezone"])
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(json.dumps({"store_id": str(store.pk), "api_key": key}))

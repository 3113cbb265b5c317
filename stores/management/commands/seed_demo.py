import json
import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from stores.actions import do_grant_store_membership, do_issue_api_key, do_revoke_api_keys
from stores.management.demo_history import do_seed_demo_history
from stores.models import Store, StoreRole

DEMO_STORE_NAME = "Demo Store"
DEMO_KEY_NAME = "demo"


class Command(BaseCommand):
    help = (
        "Idempotently create the demo store, a fresh demo API key (older demo keys are "
        "revoked, since keys are stored hashed and cannot be shown again), an admin user, a "
        "marketer who sees only the demo store in the admin, and four weeks of history "
        "(campaigns, sends, opens, clicks, orders, failures) for the admin dashboard."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--no-history",
            action="store_true",
            help="Only the store, key and users: no campaigns or past interventions.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        store, _ = Store.objects.get_or_create(
            name=DEMO_STORE_NAME,
            defaults={
                "timezone": "UTC",
                "allowed_origins": ["http://127.0.0.1:8000", "http://localhost:8000"],
                "cart_url_template": "http://127.0.0.1:8000/demo/storefront/?cart={cart_id}",
            },
        )
        do_revoke_api_keys(store, DEMO_KEY_NAME)
        key = do_issue_api_key(store, DEMO_KEY_NAME)

        username = os.environ.get("DEMO_ADMIN_USER", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "admin")
        user_model = get_user_model()
        if not user_model.objects.filter(username=username).exists():
            user_model.objects.create_superuser(username=username, email="", password=password)

        marketer_name = os.environ.get("DEMO_MARKETER_USER", "marketer")
        marketer_password = os.environ.get("DEMO_MARKETER_PASSWORD", "marketer")
        marketer = user_model.objects.filter(username=marketer_name).first()
        if marketer is None:
            marketer = user_model.objects.create_user(
                username=marketer_name, password=marketer_password, is_staff=True
            )
        do_grant_store_membership(marketer, store, StoreRole.MARKETER)
        history = None if options["no_history"] else do_seed_demo_history(store)

        self.stdout.write(
            json.dumps(
                {
                    "store_id": str(store.pk),
                    "api_key": key,
                    "admin_user": username,
                    "admin_password": password,
                    "marketer_user": marketer_name,
                    "marketer_password": marketer_password,
                    "history": None
                    if history is None
                    else {
                        "interventions": history.interventions,
                        "orders": history.orders,
                        "suppressions": history.suppressions,
                        "already_seeded_today": history.skipped,
                    },
                }
            )
        )

"""Cost of rendering a message and of the shared rate limit, per call.

Uses DATABASE_URL / REDIS_URL as given (run against your own database, migrated):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ie_notify REDIS_URL=redis://127.0.0.1:6379/3 \
        .venv/bin/python bench/template_render.py --count 5000

Reports per-call p50/p99 and calls/s for: render_message (published version from the
cache, compiled template from the per-process cache) for sms and email, the sandbox
render of a cart loop, the Redis rate-limit slot, and SMS segment counting.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402

from notifications.ratelimit import acquire_send_slot  # noqa: E402
from notifications.segments import count_segments  # noqa: E402
from stores.actions import do_create_store  # noqa: E402
from templates import actions  # noqa: E402
from templates.context import sample_context  # noqa: E402
from templates.rendering import render_message  # noqa: E402

CONTENT = {
    "en": {
        "sms": {
            "body": "Hi {{ shopper.first_name }}, {{ discount.percent }}% off: {{ cart.recovery_url }}"
        },
        "email": {
            "subject": "{{ shopper.first_name }}, your cart at {{ store.name }}",
            "html": "<h1>Hi {{ shopper.first_name }}</h1><ul>{% for item in cart.items %}"
            "<li>{{ item.name }} x {{ item.quantity }}: {{ item.price }} {{ cart.currency }}</li>"
            "{% endfor %}</ul><a href='{{ cart.recovery_url }}'>Back to your cart</a>",
        },
    }
}


def timed(label, count, call):
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    samples.sort()
    p50 = samples[len(samples) // 2] * 1e6
    p99 = samples[int(len(samples) * 0.99)] * 1e6
    rate = count / sum(samples)
    print(f"{label:<38} p50 {p50:8.1f} µs   p99 {p99:8.1f} µs   {rate:10.0f}/s")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    store, _ = do_create_store(name="Bench store")
    try:
        actions.check_create_template(
            store, key="bench", name="Bench", content=CONTENT, publish=True,
            variables=[{"name": "shopper.first_name", "default": "there"}],
        )  # fmt: skip
        context = sample_context()
        context["cart"]["items"] = context["cart"]["items"] * 5
        render_message(store.pk, "bench", "sms", context, "en")  # warm the caches
        timed(
            "render_message sms",
            args.count,
            lambda: render_message(store.pk, "bench", "sms", context, "en"),
        )
        timed(
            "render_message email (10-item loop)",
            args.count,
            lambda: render_message(store.pk, "bench", "email", context, "fr"),
        )
        settings.NOTIFICATION_RATE_LIMITS = {"sms": 10**9}
        timed(
            "rate limit slot (Redis INCR+EXPIRE)",
            args.count,
            lambda: acquire_send_slot("sms", "bench"),
        )
        text = "Hi Zoé, 10% off your cart: https://engine.example/r/abcdef 🛒"
        timed("count_segments (60 chars, UCS-2)", args.count, lambda: count_segments(text))
    finally:
        store.delete()


if __name__ == "__main__":
    main()

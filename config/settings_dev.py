"""The normal settings, with the public development SECRET_KEY allowed.

For tools that import Django on a developer's machine or in CI without serving anyone:
the test suite (pytest-django) and mypy's Django plugin. Processes the tests start inherit
the opt-in (and the test rates below) through the environment. Never point a server at this module.
"""

import os

os.environ.setdefault("ALLOW_DEV_SECRET_KEY", "1")
# The whole suite shares one client address and one Redis database across runs: rates
# it never reaches. The throttle tests set their own low ones.
os.environ.setdefault("API_RATE_PER_KEY", "1000000/s")
os.environ.setdefault("API_RATE_UNAUTHENTICATED", "1000000/s")
# Test receivers listen on 127.0.0.1; production refuses private webhook targets.
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_TARGETS", "1")

from config.settings import *  # noqa: F403

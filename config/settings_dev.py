"""The normal settings, with the public development SECRET_KEY allowed.

For tools that import Django on a developer's machine or in CI without serving anyone:
the test suite (pytest-django) and mypy's Django plugin. Processes the tests start inherit
the opt-in through the environment. Never point a server at this module.
"""

import os

os.environ.setdefault("ALLOW_DEV_SECRET_KEY", "1")

from config.settings import *  # noqa: F403

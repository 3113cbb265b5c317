"""The dashboard's Chart.js is the project's own static file, at the version
package-lock.json pins: `make vendor-js` was run after the last bump."""

import json
import re
from pathlib import Path

from django.contrib.staticfiles import finders

from tests.support.processes import ROOT


def static_text(name: str) -> str:
    found = finders.find(name)
    assert found, f"{name} is not among the static files"
    return Path(found).read_text(encoding="utf-8")


def test_vendored_chartjs_is_the_version_package_lock_pins():
    lock = json.loads((ROOT / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/chart.js"]["version"]

    vendored = static_text("tracking/vendor/chart.umd.min.js")

    assert re.search(r"Chart\.js v(\S+)", vendored[:200]).group(1) == pinned
    # The map is not vendored; a reference to it would 404 in every devtools session.
    assert "sourceMappingURL" not in vendored[-300:]


def test_vendored_chartjs_ships_with_its_licences():
    for name in ("chart.js.LICENSE.md", "kurkle-color.LICENSE.md"):
        assert "Permission is hereby granted" in static_text(f"tracking/vendor/{name}")

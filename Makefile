# The two commands: `make run` and `make test`. Everything else is a step of theirs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test install lint typecheck pytest lock clean browser vendor-js

run: $(INSTALLED)
	$(BIN)/python -m config.services run

test: $(INSTALLED)
	$(BIN)/python -m config.services require
	$(MAKE) lint typecheck browser pytest

install: $(INSTALLED)

$(INSTALLED): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $@

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck:
	$(BIN)/mypy

# The storefront's browser test drives Debian's chromium (Playwright's own browser
# download does not work on our CI machines). Installed once; a no-op afterwards.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium; }

# CI runs at any hour, so the in-process tests run a second time with the clock inside
# the test stores' quiet hours (23:30 in Paris); a test that depends on the hour fails here.
QUIET_HOURS_CLOCK := 2026-01-15T22:30:00+00:00
pytest:
	$(BIN)/pytest
	$(BIN)/pytest -q -p no:cacheprovider -m "not slow" --wall-clock=$(QUIET_HOURS_CLOCK)

# The admin dashboard's Chart.js is committed under $(VENDOR_JS), so `make install` needs
# no node and the page works offline (docs/analytics.md#where-chartjs-comes-from).
# package-lock.json pins the version and its integrity hash; after changing it, this
# rewrites the copy and its licences (tests/tracking/test_vendored_assets.py compares them).
VENDOR_JS := tracking/static/tracking/vendor
vendor-js:
	npm ci --ignore-scripts --no-audit --no-fund
	sed '/^\/\/# sourceMappingURL=/d' node_modules/chart.js/dist/chart.umd.min.js > $(VENDOR_JS)/chart.umd.min.js
	cp node_modules/chart.js/LICENSE.md $(VENDOR_JS)/chart.js.LICENSE.md
	cp node_modules/@kurkle/color/LICENSE.md $(VENDOR_JS)/kurkle-color.LICENSE.md

# Refresh the pinned versions after changing dependencies in pyproject.toml.
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^intervention-engine' > requirements.lock

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache

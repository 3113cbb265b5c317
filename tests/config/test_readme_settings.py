"""Every setting read from the environment is in the README's configuration table."""

import re

from tests.support.processes import ROOT

# env("NAME", …), env.int("NAME", …), env.str(…), …: how config/settings.py reads them.
READ_FROM_ENV = re.compile(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"")


def test_every_environment_setting_is_in_the_readme():
    names = set(READ_FROM_ENV.findall((ROOT / "config" / "settings.py").read_text()))
    readme = (ROOT / "README.md").read_text()
    # A row may list several names: `CHANNEL_COST_EMAIL` / `CHANNEL_COST_SMS` / ...
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", readme))

    assert len(names) > 50  # the pattern still matches how settings.py reads them
    assert sorted(names - documented) == []

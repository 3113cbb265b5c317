"""The apps talk to each other through public names only (docs/architecture.md).

The direction of imports is checked by import-linter (``make lint``); this checks what
it cannot: that no app reaches into another's private (underscore) names.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = (
    "config",
    "stores",
    "interventions",
    "realtime",
    "campaigns",
    "tracking",
    "notifications",
    "templates",
)


def private_imports_across_apps() -> list[str]:
    found = []
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.ImportFrom) or not node.module:
                    continue
                source_app = node.module.split(".")[0]
                if source_app == app or source_app not in APPS:
                    continue
                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_")
                ]
    return found


def test_no_app_imports_another_apps_private_names():
    assert private_imports_across_apps() == []

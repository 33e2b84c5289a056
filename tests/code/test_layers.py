"""The layers hold: every import of ours (module level or inside a function) points downward.

core < configs < features, models < artifacts < training, serving < persona (the CLI). Read from the
source with `ast`, so an import hidden inside a function counts like any other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"core", "configs", "features", "models", "artifacts", "training", "serving", "persona"}

# package -> the packages of ours it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "core": {"configs"},  # ConfigError is raised by configs, which imports nothing of ours
    "configs": set(),
    "models": {"configs", "core"},
    "features": {"configs", "core"},
    "artifacts": {"configs", "core", "features", "models"},
    "training": {"configs", "core", "features", "models", "artifacts"},
    "serving": {"configs", "core", "features", "models", "artifacts"},
    "persona": OURS,
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return [(line, top) for line, top in found if top in OURS]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_downward(package: str) -> None:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, top in _imports(path):
            if top != package and top not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from training.jobs import train_model\n    import persona.cli\n")
    assert _imports(module) == [(2, "training"), (3, "persona")]

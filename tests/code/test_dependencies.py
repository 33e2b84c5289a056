"""Every third-party package Persona's shipped code imports is a direct dependency in pyproject.toml.

A package that only arrives through another's requirements (prometheus-client through BentoML, scipy
through scikit-learn) can vanish or change major version when that other package moves; the image and
`pip install persona` would then break at import time. Read from the source (imports inside functions
too), not from what happens to be installed.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What ships: the wheel's packages, and the Feast repo the image copies (its modules import each other).
SHIPPED = [*PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"], "feature_repo"]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(folders: list[str]) -> dict[str, set[str]]:
    """Top-level module name -> files importing it (absolute imports only: relative ones are ours)."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def third_party(found: dict[str, set[str]]) -> dict[str, set[str]]:
    ours = set(SHIPPED) | {p.stem for p in (ROOT / "feature_repo").glob("*.py")}
    return {m: files for m, files in found.items() if m not in sys.stdlib_module_names and m not in ours}


def direct_dependencies() -> set[str]:
    """The required dependencies and those of the extras (an extra's package, e.g. pyspark for
    `engine: spark`, is imported only where that extra is configured, and declared there)."""
    specs = [*PYPROJECT["project"]["dependencies"]]
    for extra in PYPROJECT["project"].get("optional-dependencies", {}).values():
        specs += extra
    return {
        _normal(re.match(r"[A-Za-z0-9_.-]+", spec).group(0))  # type: ignore[union-attr]
        for spec in specs
    }


def test_every_imported_third_party_package_is_a_direct_dependency() -> None:
    distributions = packages_distributions()
    direct = direct_dependencies()
    modules = third_party(imported_modules(SHIPPED))
    assert {"pandas", "prometheus_client", "feast"} <= set(modules)  # the scan sees real imports
    missing = {}
    for module, files in sorted(modules.items()):
        providers = {_normal(d) for d in distributions.get(module, [])}
        assert providers, f"{module} (imported by {sorted(files)[0]}) is not installed"
        if not providers & direct:
            missing[module] = f"{'/'.join(sorted(providers))} (imported by {sorted(files)[0]})"
    assert not missing, f"add to [project].dependencies in pyproject.toml: {missing}"


def test_the_scan_catches_a_transitive_only_import(tmp_path: Path, monkeypatch) -> None:
    """The check can fail: a module importing a package only BentoML brings in is reported."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("def f():\n    import cattrs\n    from . import sibling\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    modules = third_party(imported_modules(["pkg"]))
    assert set(modules) == {"cattrs"}
    providers = {_normal(d) for d in packages_distributions()["cattrs"]}
    assert not providers & direct_dependencies()


def test_dev_only_packages_stay_out_of_shipped_code() -> None:
    dev = {_normal(re.match(r"[A-Za-z0-9_.-]+", s).group(0)) for s in PYPROJECT["dependency-groups"]["dev"]}  # type: ignore[union-attr]
    distributions = packages_distributions()
    modules = third_party(imported_modules(SHIPPED))
    leaked = {m for m in modules if {_normal(d) for d in distributions.get(m, [])} & dev}
    assert not leaked, f"shipped code imports dev-only packages: {leaked}"

"""One place registers and promotes: every training job hands its gate decision to
`training.jobs.register_gated` (log the run, register, tag `challenger`, move `champion` through the gate),
so no job can forget a step or record a promotion differently."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ONE_PLACE = {"mark_challenger": "register_gated", "_log_run": "register_gated"}
# promote_gated's callers: register_gated (promote at once) and retrain's promote_all (after all kinds)
GATE_PROMOTERS = {("jobs.py", "register_gated"), ("retrain.py", "promote_all")}


def _calls(path: Path) -> list[tuple[str, str, int]]:
    """(called name, enclosing function, line) of every call in the module."""
    found: list[tuple[str, str, int]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.Call):
                callee = child.func
                name = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", "")
                found.append((name, function, child.lineno))
            visit(child, inner)

    visit(ast.parse(path.read_text()), "<module>")
    return found


def test_jobs_register_and_promote_only_through_register_gated() -> None:
    jobs = sorted((ROOT / "training").glob("*.py"))
    stray = []
    gate_moves = []
    for path in jobs:
        for name, function, line in _calls(path):
            if name in ONE_PLACE and function != ONE_PLACE[name]:
                stray.append(f"{path.name}:{line} {name} in {function}")
            if name == "move_champion":
                gate_moves.append((path.name, function))
    assert not stray, stray
    # a gate promotion happens in promote_gated (register_gated's, or retrain's after every kind trained);
    # the other moves are registry.py's manual ones (force, rollback)
    assert {(p, f) for p, f in gate_moves if p != "registry.py"} == {("jobs.py", "promote_gated")}


def test_gate_promotions_go_through_promote_gated() -> None:
    callers = {
        (path.name, function)
        for path in (ROOT / "training").glob("*.py")
        for name, function, _ in _calls(path)
        if name == "promote_gated"
    }
    assert callers == GATE_PROMOTERS


def test_every_kind_trains_through_the_helper() -> None:
    """Each job module that trains a kind calls register_gated (the classifiers and segments in jobs.py)."""
    callers = {
        (path.name, function)
        for path in (ROOT / "training").glob("*.py")
        for name, function, _ in _calls(path)
        if name == "register_gated"
    }
    assert {
        ("jobs.py", "evaluate_and_register"),
        ("jobs.py", "train_segments"),
        ("value.py", "train_value"),
        ("uplift.py", "train_uplift"),
        ("recommend.py", "train_recommend"),
    } <= callers

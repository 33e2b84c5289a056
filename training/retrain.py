"""`persona retrain`: build features -> apply/materialize Feast -> train and gate every model -> fit tag
cut points -> move `champion` aliases, all under one lock.

Nothing is half-promoted: every model is trained, logged and gated first (each new version only gets the
`challenger` alias); `champion` aliases move together at the end, and if one move fails the ones already
moved are put back. Running it again on the same data is harmless: an equal model does not beat the
champion, so no alias moves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from artifacts.registry import KINDS
from core.errors import RegistryError, StageSkipped
from core.lock import RetrainBusy, RetrainLock
from features.build import build_features
from features.feast_io import apply_repo, get_store, materialize
from training.jobs import promote_gated, train_model
from training.registry import restore_champion
from training.tag_cutpoints import fit_and_save

__all__ = ["RetrainBusy", "RetrainLock", "RetrainReport", "promote_all", "retrain"]

if TYPE_CHECKING:
    from configs.settings import Settings
    from training.jobs import TrainOutcome


@dataclass
class RetrainReport:
    """What a retrain did: per kind, the outcome or why it was skipped; and the aliases moved."""

    outcomes: dict[str, TrainOutcome] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    promoted: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # kind -> (before, after)
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    notes: list[str] = field(default_factory=list)


def promote_all(settings: Settings, outcomes: dict[str, TrainOutcome]) -> dict[str, tuple[str | None, str]]:
    """Move `champion` to every outcome the gate accepted; if a move fails, restore the ones moved and
    raise RegistryError (so the registry is as before)."""

    moved: dict[str, tuple[str | None, str]] = {}
    try:
        for kind, outcome in outcomes.items():
            if not outcome.decision.promote:
                continue
            before = promote_gated(settings, outcome)
            moved[kind] = (before, outcome.version)
    except Exception as exc:
        for kind, (before, after) in moved.items():
            restore_champion(
                settings, kind, version=before, reverted=after, reason=f"{type(exc).__name__}: {exc}"
            )
            outcomes[kind].promoted = False
        raise RegistryError(
            f"moving the champion aliases failed ({type(exc).__name__}: {exc}); restored "
            f"{', '.join(moved) or 'nothing'} to the previous champion",
        ) from exc
    return moved


def _fit_tag_cutpoints(settings: Settings, report: RetrainReport) -> None:
    """Fit the tag catalog's quantile cut points on the new feature snapshot (fixed until the next retrain)."""

    path = fit_and_save(settings)
    report.notes.append(f"tag cut points fitted -> {path}")


def retrain(
    settings: Settings,
    *,
    build: bool = True,
    kinds: tuple[str, ...] = KINDS,
    say: Callable[[str], None] = print,
    train: Callable[..., Any] | None = None,
) -> RetrainReport:
    """Run the whole retrain under the lock (see module doc). `build=False` trains on the feature tables
    and Feast registry as they are. Raises RetrainBusy if another run holds the lock."""

    train = train or train_model
    report = RetrainReport()
    with RetrainLock(settings.path(settings.training.lock_path)):
        store = None
        if build:
            started = time.perf_counter()
            built = build_features(settings)
            report.steps["features"] = time.perf_counter() - started
            say(f"features: {sum(n for _, n in built.written.values())} rows in {len(built.written)} tables")
            started = time.perf_counter()
            apply_repo(settings)
            stats = materialize(settings)
            report.steps["feast"] = time.perf_counter() - started
            say(f"feast: applied, materialized {stats.rows_written} rows")
            store = get_store(settings)
        for kind in kinds:
            started = time.perf_counter()
            try:
                outcome = train(settings, kind, promote=False, store=store)
            except StageSkipped as exc:
                report.skipped[kind] = exc.message
                say(f"{kind}: skipped ({exc.message})")
                continue
            report.steps[f"train_{kind}"] = time.perf_counter() - started
            report.outcomes[kind] = outcome
            verdict = "passes the gate" if outcome.decision.promote else "stays challenger"
            say(f"{kind}: v{outcome.version} {verdict}: {outcome.decision.reason}")
        _fit_tag_cutpoints(settings, report)
        report.promoted = promote_all(settings, report.outcomes)
        for kind, (before, after) in report.promoted.items():
            say(f"{kind}: champion v{before or '-'} -> v{after}")
    return report

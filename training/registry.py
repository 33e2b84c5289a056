"""The MLflow model registry: versions, aliases (`champion`, `challenger`), the promotion gate, manual
promotion, rollback, comparison, and `load_champion` (what serving calls).

Aliases only, no stages. Every gate decision and every move of `champion` is appended to the promotion
history (`training.promotions`, a table nothing overwrites; `persona promote --history`). The version
tags (`gate.*` on every version, `champion.previous`/`champion.promoted_by`/... on the one receiving the
alias) describe each version's current state for `persona compare`.

A tie never promotes: metrics are compared at the 4 decimals every report shows, and a challenger must
beat the champion by MORE than `gate.margin`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from mlflow.exceptions import MlflowException

from artifacts.registry import (
    CHALLENGER,
    CHAMPION,
    KINDS,
    NONE,
    SERVICE_TAG,
    alias_version,
    champion_version,
    client,
    model_name,
)
from core.errors import RegistryError

if TYPE_CHECKING:
    from configs.sections.training import GateConfig
    from configs.settings import Settings


# ------------------------------------------------------------------------------------ the gate
@dataclass(frozen=True)
class GateDecision:
    """Whether a version may become champion, why, and the numbers compared."""

    promote: bool
    reason: str
    compared: dict[str, Any] = field(default_factory=dict)
    previous_champion: str | None = None

    def tags(self) -> dict[str, str]:
        """The decision as model-version tags."""
        return {
            "gate.decision": "promote" if self.promote else "reject",
            "gate.reason": self.reason[:4000],
            "gate.compared": json.dumps(self.compared, sort_keys=True, default=str)[:4000],
            "gate.champion_at_decision": self.previous_champion or NONE,
            "gate.decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }


def _bad(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def beats(ours: float, theirs: float, margin: float) -> bool:
    """`ours` beats `theirs` by more than `margin`, at the 4 decimals reports show (so no report ever
    reads "0.2844 beats 0.2844"): a tie, or a gain of exactly the margin, never promotes."""
    return round(round(ours, 4) - round(theirs, 4), 10) > round(margin, 10)


def gate_classifier(
    *,
    challenger: Mapping[str, float],
    baseline: Mapping[str, float],
    champion: Mapping[str, float] | None,
    config: GateConfig,
    champion_version: str | None = None,
    challenger_valid: Mapping[str, float] | None = None,
    baseline_valid: Mapping[str, float] | None = None,
) -> GateDecision:
    """Decide on a classifier from held-out metrics (pure).

    `challenger`, `baseline`, `champion`: metrics on the same TEST window. `challenger_valid`,
    `baseline_valid`: on the validation window, where "never worse than the logistic baseline" is
    judged (the candidate was chosen there; judging it again on test would let test noise veto the
    better model and leave no champion at all). Promote only if every configured floor is cleared on
    test, the primary metric is not below the baseline's on validation, and (when a champion exists) it
    beats the champion's on the test window by more than `config.margin` (`beats`: a tie never
    promotes). The first model needs the floors and the baseline only.
    """
    metric = config.primary_metric
    compared: dict[str, Any] = {
        "metric": metric,
        "challenger": challenger.get(metric),
        "baseline": baseline.get(metric),
        "champion": None if champion is None else champion.get(metric),
        "challenger_valid": None if challenger_valid is None else challenger_valid.get(metric),
        "baseline_valid": None if baseline_valid is None else baseline_valid.get(metric),
        "margin": config.margin,
        "floors": dict(config.floors),
    }
    ours = challenger.get(metric)
    if _bad(ours):
        return GateDecision(
            False, f"challenger has no {metric} on the test window", compared, champion_version
        )
    failed = [
        f"{name} {challenger.get(name, float('nan')):.4f} < floor {floor:.4f}"
        for name, floor in sorted(config.floors.items())
        if _bad(challenger.get(name)) or challenger[name] < floor
    ]
    if failed:
        return GateDecision(False, "below floor: " + "; ".join(failed), compared, champion_version)
    ours_valid, base_valid = compared["challenger_valid"], compared["baseline_valid"]
    if not _bad(ours_valid) and not _bad(base_valid) and round(ours_valid, 4) < round(base_valid, 4):
        return GateDecision(
            False,
            f"validation {metric} {ours_valid:.4f} is worse than the logistic baseline's {base_valid:.4f}",
            compared,
            champion_version,
        )
    if champion is None:
        return GateDecision(
            True,
            f"first model: {metric} {ours:.4f} clears the floors, and on validation it is not worse than "
            "the logistic baseline",
            compared,
        )
    theirs = champion.get(metric)
    if _bad(theirs):
        return GateDecision(
            True,
            f"champion v{champion_version} could not be scored on this window; challenger clears floors",
            compared,
            champion_version,
        )
    if beats(ours, theirs, config.margin):
        return GateDecision(
            True,
            f"{metric} {ours:.4f} beats champion v{champion_version} ({theirs:.4f}) by more than {config.margin}",
            compared,
            champion_version,
        )
    return GateDecision(
        False,
        f"{metric} {ours:.4f} does not beat champion v{champion_version} ({theirs:.4f}) by more than "
        f"{config.margin}",
        compared,
        champion_version,
    )


def gate_value(
    *,
    challenger: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    champion: Mapping[str, float] | None,
    config: GateConfig,
    champion_version: str | None = None,
) -> GateDecision:
    """Decide on a value model from held-out metrics on one test window (pure). Lower MAE is better.

    Promote only if its test MAE is not above any baseline's (BG/NBD x Gamma-Gamma, naive rate) and, when a
    champion exists, below the champion's on the same window by more than `config.margin` (relative: 0.01
    asks for a 1% lower MAE)."""
    ours = challenger.get("mae")
    compared: dict[str, Any] = {
        "metric": "mae",
        "challenger": ours,
        "baselines": {name: m.get("mae") for name, m in baselines.items()},
        "champion": None if champion is None else champion.get("mae"),
        "margin": config.margin,
    }
    if _bad(ours):
        return GateDecision(False, "challenger has no MAE on the test window", compared, champion_version)
    for name, metrics in baselines.items():
        theirs = metrics.get("mae")
        if not _bad(theirs) and ours > theirs:  # type: ignore[operator]
            return GateDecision(
                False,
                f"MAE {ours:.4f} is worse than the {name} baseline's {theirs:.4f}",
                compared,
                champion_version,
            )
    if champion is None:
        return GateDecision(True, f"first model: MAE {ours:.4f} is no worse than every baseline", compared)
    theirs = champion.get("mae")
    if _bad(theirs):
        return GateDecision(
            True,
            f"champion v{champion_version} could not be scored on this window; challenger beats the baselines",
            compared,
            champion_version,
        )
    if ours < theirs * (1 - config.margin) and ours < theirs:  # type: ignore[operator]
        return GateDecision(
            True,
            f"MAE {ours:.4f} beats champion v{champion_version} ({theirs:.4f}) by more than {config.margin:.0%}",
            compared,
            champion_version,
        )
    return GateDecision(
        False,
        f"MAE {ours:.4f} does not beat champion v{champion_version} ({theirs:.4f}) by more than {config.margin:.0%}",
        compared,
        champion_version,
    )


def gate_uplift(
    *,
    challenger: Mapping[str, float],
    baseline: Mapping[str, float],
    champion: Mapping[str, float] | None,
    config: GateConfig,
    champion_version: str | None = None,
) -> GateDecision:
    """Decide on an uplift model from held-out Qini on the same test customers (pure).

    Promote only if its Qini is above `config.uplift_floor` and not below a random ranking's (the
    baseline), and, when a champion exists, above the champion's by more than `config.margin`."""
    ours, base = challenger.get("qini"), baseline.get("qini")
    compared: dict[str, Any] = {
        "metric": "qini",
        "challenger": ours,
        "baseline": base,
        "champion": None if champion is None else champion.get("qini"),
        "floor": config.uplift_floor,
        "margin": config.margin,
    }
    if _bad(ours):
        return GateDecision(False, "challenger has no Qini on the test customers", compared, champion_version)
    if ours <= config.uplift_floor:  # type: ignore[operator]
        return GateDecision(
            False,
            f"Qini {ours:.4f} is not above the floor {config.uplift_floor:.4f}",
            compared,
            champion_version,
        )
    if not _bad(base) and ours < base:  # type: ignore[operator]
        return GateDecision(
            False, f"Qini {ours:.4f} is below a random ranking's {base:.4f}", compared, champion_version
        )
    if champion is None:
        return GateDecision(
            True, f"first model: Qini {ours:.4f} clears the floor and a random ranking", compared
        )
    theirs = champion.get("qini")
    if _bad(theirs):
        return GateDecision(
            True,
            f"champion v{champion_version} could not be scored on these customers; challenger clears the floor",
            compared,
            champion_version,
        )
    if ours > theirs + config.margin:  # type: ignore[operator]
        return GateDecision(
            True,
            f"Qini {ours:.4f} beats champion v{champion_version} ({theirs:.4f}) by more than {config.margin}",
            compared,
            champion_version,
        )
    return GateDecision(
        False,
        f"Qini {ours:.4f} does not beat champion v{champion_version} ({theirs:.4f}) by more than {config.margin}",
        compared,
        champion_version,
    )


def gate_segments(
    *,
    silhouette: float,
    ari_vs_champion: float | None,
    config: GateConfig,
    champion_version: str | None = None,
    champion_silhouette: float | None = None,
) -> GateDecision:
    """Decide on a segmentation (pure): silhouette not below its floor; when a champion exists, agreement
    with the champion's segments on the same customers (ARI) above its floor, so personas do not
    reshuffle (below the floor it is never promoted by the gate; `persona promote --force` with a reason
    is the way), and a silhouette better than the champion's on the same customers (same scaled space)
    by more than `config.margin` (`beats`), so an equal refit does not move the alias."""
    compared = {
        "silhouette": silhouette,
        "silhouette_floor": config.silhouette_floor,
        "champion_silhouette": champion_silhouette,
        "ari_vs_champion": ari_vs_champion,
        "ari_floor": config.ari_floor,
        "margin": config.margin,
    }
    if _bad(silhouette) or silhouette < config.silhouette_floor:
        return GateDecision(
            False,
            f"silhouette {silhouette:.4f} < floor {config.silhouette_floor:.4f}",
            compared,
            champion_version,
        )
    if champion_version is None:
        return GateDecision(True, f"first model: silhouette {silhouette:.4f} clears the floor", compared)
    if _bad(ari_vs_champion) or ari_vs_champion < config.ari_floor:  # type: ignore[operator]
        return GateDecision(
            False,
            f"ARI vs champion v{champion_version} {ari_vs_champion:.4f} < floor {config.ari_floor:.4f}",
            compared,
            champion_version,
        )
    if not _bad(champion_silhouette) and not beats(silhouette, champion_silhouette, config.margin):  # type: ignore[arg-type]
        return GateDecision(
            False,
            f"silhouette {silhouette:.4f} does not beat champion v{champion_version} ({champion_silhouette:.4f}) "
            f"by more than {config.margin}",
            compared,
            champion_version,
        )
    return GateDecision(
        True,
        f"silhouette {silhouette:.4f} beats champion v{champion_version} ({champion_silhouette:.4f}), ARI vs "
        f"champion {ari_vs_champion:.4f} >= {config.ari_floor}",
        compared,
        champion_version,
    )


# ------------------------------------------------------------------------------- registry access
def _log(settings: Settings):
    from training.promotions import PromotionLog

    return PromotionLog.open(settings)


def mark_challenger(
    settings: Settings, kind: str, *, version: str, service: str, decision: GateDecision, mlflow_client=None
) -> None:
    """Tag a freshly registered version with its FeatureService and gate decision; alias `challenger`;
    append the decision to the promotion history."""
    from training.promotions import default_actor

    c = mlflow_client or client(settings)
    name = model_name(settings, kind)
    c.set_model_version_tag(name, version, SERVICE_TAG, service)
    for key, value in decision.tags().items():
        c.set_model_version_tag(name, version, key, value)
    c.set_registered_model_alias(name, CHALLENGER, version)
    _log(settings).append(
        event="gate",
        kind=kind,
        model=name,
        from_version=decision.previous_champion,
        to_version=str(version),
        decision="promote" if decision.promote else "reject",
        reason=decision.reason,
        metrics=decision.compared,
        actor=default_actor("gate"),
    )


_EVENT_OF = {"gate": "promote", "manual": "force", "rollback": "rollback"}


def move_champion(
    settings: Settings,
    kind: str,
    *,
    version: str,
    promoted_by: str,
    note: str = "",
    metrics: Mapping[str, Any] | None = None,
    mlflow_client=None,
) -> str | None:
    """Point `champion` at `version`, record on it who moved it, when, and the previous champion
    (returned), and append the move to the promotion history. `promoted_by`: gate | manual | rollback."""
    from training.promotions import default_actor

    c = mlflow_client or client(settings)
    name = model_name(settings, kind)
    try:
        c.get_model_version(name, version)
    except Exception as exc:
        raise RegistryError(f"{name} has no version {version}", hint="see `persona compare`") from exc
    previous = champion_version(settings, kind, mlflow_client=c)
    if previous == str(version):
        return previous
    c.set_registered_model_alias(name, CHAMPION, str(version))
    if promoted_by != "rollback":  # a rollback keeps the target's own history, so rollbacks chain back
        c.set_model_version_tag(name, version, "champion.previous", previous or NONE)
    c.set_model_version_tag(name, version, "champion.promoted_by", promoted_by)
    c.set_model_version_tag(
        name, version, "champion.promoted_at", datetime.now(UTC).isoformat(timespec="seconds")
    )
    if note:
        c.set_model_version_tag(name, version, "champion.note", note[:4000])
    _log(settings).append(
        event=_EVENT_OF[promoted_by],
        kind=kind,
        model=name,
        from_version=previous,
        to_version=str(version),
        reason=note or promoted_by,
        metrics=dict(metrics or {}),
        actor=default_actor("gate") if promoted_by == "gate" else default_actor(),
    )
    return previous


def restore_champion(
    settings: Settings,
    kind: str,
    *,
    version: str | None,
    reverted: str | None = None,
    reason: str = "",
    mlflow_client=None,
) -> None:
    """Put `champion` back on `version` (None: no champion) after a multi-model promotion failed half-way;
    the version that briefly held it (`reverted`) is tagged `champion.reverted`, and the history says so."""
    c = mlflow_client or client(settings)
    name = model_name(settings, kind)
    if reverted is not None:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        c.set_model_version_tag(name, reverted, "champion.reverted", f"{stamp} {reason}"[:4000])
    if version is None:
        if alias_version(c, name, CHAMPION) is not None:
            c.delete_registered_model_alias(name, CHAMPION)
    else:
        c.set_registered_model_alias(name, CHAMPION, version)
    _log(settings).append(
        event="revert",
        kind=kind,
        model=name,
        from_version=reverted,
        to_version=version,
        reason=reason or "a promotion of several models failed half-way",
    )


def promote_forced(settings: Settings, kind: str, *, version: str, reason: str) -> str | None:
    """Force `champion` to `version` whatever its gate decision (recorded as a forced promotion with
    `reason` and the numbers its gate compared); returns the previous champion."""
    if not reason or not reason.strip():
        raise RegistryError(
            "a forced promotion needs a reason", hint='persona promote KIND --force N --reason "why"'
        )
    c = client(settings)
    name = model_name(settings, kind)
    try:
        tags = c.get_model_version(name, str(version)).tags or {}
    except Exception as exc:
        raise RegistryError(f"{name} has no version {version}", hint="see `persona compare`") from exc
    try:
        compared = json.loads(tags.get("gate.compared", "{}"))
    except json.JSONDecodeError:
        compared = {}
    metrics = {
        "gate_decision": tags.get("gate.decision", ""),
        "gate_reason": tags.get("gate.reason", ""),
        **compared,
    }
    return move_champion(
        settings,
        kind,
        version=str(version),
        promoted_by="manual",
        note=reason.strip(),
        metrics=metrics,
        mlflow_client=c,
    )


def rollback(settings: Settings, kind: str, *, reason: str = "") -> tuple[str, str]:
    """Give `champion` back to the version it replaced (the current champion's `champion.previous`).
    Returns (from_version, to_version). Raises RegistryError when there is nothing to roll back to."""
    c = client(settings)
    name = model_name(settings, kind)
    current = alias_version(c, name, CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back", hint=f"train one: persona train {kind}")
    previous = (current.tags or {}).get("champion.previous", NONE)
    if previous in ("", NONE):
        raise RegistryError(
            f"{name} champion v{current.version} has no previous champion recorded",
            hint=f'force another version with: persona promote {kind} --force N --reason "why"',
        )
    move_champion(
        settings,
        kind,
        version=previous,
        promoted_by="rollback",
        note=reason or f"rollback of v{current.version}",
        mlflow_client=c,
    )
    c.set_model_version_tag(name, previous, "champion.restored_from", str(current.version))
    c.set_model_version_tag(
        name, str(current.version), "champion.rolled_back_at", datetime.now(UTC).isoformat(timespec="seconds")
    )
    return str(current.version), previous


def history(settings: Settings, kind: str | None = None):
    """The promotion history (oldest first), optionally of one kind."""
    return _log(settings).read(kind)


# --------------------------------------------------------------------------------------- compare
def compare(settings: Settings, kinds: tuple[str, ...] = KINDS) -> pd.DataFrame:
    """One row per registered version: model, version, aliases, created, FeatureService, gate decision
    and held-out metrics from its run (classifiers: test ROC-AUC/PR-AUC and the baseline's; segments:
    silhouette, ARI vs champion)."""

    c = client(settings)
    rows = []
    for kind in kinds:
        name = model_name(settings, kind)
        try:
            model = c.get_registered_model(name)
        except MlflowException:
            continue
        aliases_of: dict[str, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases_of.setdefault(str(version), []).append(alias)
        for mv in c.search_model_versions(f"name='{name}'"):
            metrics: dict[str, float] = {}
            if mv.run_id:
                try:
                    metrics = c.get_run(mv.run_id).data.metrics
                except MlflowException:
                    metrics = {}
            tags = mv.tags or {}
            rows.append(
                {
                    "model": name,
                    "version": int(mv.version),
                    "aliases": ",".join(sorted(aliases_of.get(str(mv.version), []))),
                    "created": pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC").strftime(
                        "%Y-%m-%d %H:%M"
                    ),
                    "service": tags.get(SERVICE_TAG, ""),
                    "gate": tags.get("gate.decision", ""),
                    "promoted_by": tags.get("champion.promoted_by", ""),
                    "roc_auc": metrics.get("test_roc_auc"),
                    "pr_auc": metrics.get("test_pr_auc"),
                    "baseline_pr_auc": metrics.get("baseline_test_pr_auc"),
                    "silhouette": metrics.get("silhouette"),
                    "ari_vs_champion": metrics.get("ari_vs_champion"),
                    "qini": metrics.get("test_qini"),
                }
            )
    columns = [
        "model",
        "version",
        "aliases",
        "created",
        "service",
        "gate",
        "promoted_by",
        "roc_auc",
        "pr_auc",
        "baseline_pr_auc",
        "silhouette",
        "ari_vs_champion",
        "qini",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["model", "version"], ignore_index=True)

"""The promotion gate's pure decision rules, on hand-picked metric values."""

from __future__ import annotations

import json

from configs.sections.training import GateConfig
from training.registry import gate_classifier, gate_segments

CFG = GateConfig(primary_metric="pr_auc", margin=0.01, floors={"roc_auc": 0.6})


def test_first_model_promoted_when_it_clears_floors_and_baseline() -> None:
    d = gate_classifier(
        challenger={"pr_auc": 0.40, "roc_auc": 0.75}, baseline={"pr_auc": 0.35}, champion=None, config=CFG
    )
    assert d.promote and d.reason.startswith("first model")
    assert d.tags()["gate.champion_at_decision"] == "none"


def test_floor_refuses() -> None:
    d = gate_classifier(
        challenger={"pr_auc": 0.40, "roc_auc": 0.55}, baseline={"pr_auc": 0.1}, champion=None, config=CFG
    )
    assert not d.promote and d.reason == "below floor: roc_auc 0.5500 < floor 0.6000"


def test_worse_than_baseline_on_validation_refuses() -> None:
    d = gate_classifier(
        challenger={"pr_auc": 0.30, "roc_auc": 0.70},
        baseline={"pr_auc": 0.20},
        champion=None,
        config=CFG,
        challenger_valid={"pr_auc": 0.30},
        baseline_valid={"pr_auc": 0.31},
    )
    assert (
        not d.promote and "validation pr_auc 0.3000 is worse than the logistic baseline's 0.3100" in d.reason
    )


def test_a_first_model_that_loses_to_the_baseline_on_test_only_is_still_served() -> None:
    # chosen on validation (where it is the better one); test noise must not leave no champion at all
    d = gate_classifier(
        challenger={"pr_auc": 0.30, "roc_auc": 0.70},
        baseline={"pr_auc": 0.31},
        champion=None,
        config=CFG,
        challenger_valid={"pr_auc": 0.33},
        baseline_valid={"pr_auc": 0.32},
    )
    assert d.promote and d.reason.startswith("first model")


def test_a_tie_never_promotes() -> None:
    cfg = GateConfig(primary_metric="pr_auc", margin=0.0, floors={})
    args = dict(baseline={"pr_auc": 0.2}, config=cfg, champion_version="3")
    for ours in (0.2844, 0.28440001, 0.28444):  # equal at the 4 decimals reports show
        d = gate_classifier(challenger={"pr_auc": ours}, champion={"pr_auc": 0.2844}, **args)
        assert not d.promote and "does not beat champion v3 (0.2844)" in d.reason
    assert gate_classifier(challenger={"pr_auc": 0.2845}, champion={"pr_auc": 0.2844}, **args).promote
    # a gain of exactly the margin is not "more than" it
    cfg = GateConfig(primary_metric="pr_auc", margin=0.01, floors={})
    d = gate_classifier(
        challenger={"pr_auc": 0.2944},
        champion={"pr_auc": 0.2844},
        baseline={},
        config=cfg,
        champion_version="3",
    )
    assert not d.promote


def test_margin_against_champion() -> None:
    args = dict(baseline={"pr_auc": 0.2}, config=CFG, champion_version="3")
    # 0.405 - 0.40 = 0.005 is not more than the 0.01 margin
    d = gate_classifier(challenger={"pr_auc": 0.405, "roc_auc": 0.8}, champion={"pr_auc": 0.40}, **args)
    assert not d.promote and "does not beat champion v3 (0.4000)" in d.reason
    d = gate_classifier(challenger={"pr_auc": 0.42, "roc_auc": 0.8}, champion={"pr_auc": 0.40}, **args)
    assert d.promote and d.previous_champion == "3"
    compared = json.loads(d.tags()["gate.compared"])
    assert compared["challenger"] == 0.42 and compared["champion"] == 0.40 and compared["metric"] == "pr_auc"


def test_roc_auc_as_primary_metric() -> None:
    cfg = GateConfig(primary_metric="roc_auc", margin=0.0, floors={})
    d = gate_classifier(
        challenger={"pr_auc": 0.1, "roc_auc": 0.71},
        baseline={"roc_auc": 0.7},
        champion={"roc_auc": 0.72},
        config=cfg,
        champion_version="1",
    )
    assert not d.promote and "roc_auc 0.7100 does not beat" in d.reason


def test_segments_gate() -> None:
    cfg = GateConfig(silhouette_floor=0.1, ari_floor=0.5)
    assert gate_segments(silhouette=0.2, ari_vs_champion=None, config=cfg).promote
    low = gate_segments(silhouette=0.05, ari_vs_champion=None, config=cfg)
    assert not low.promote and low.reason == "silhouette 0.0500 < floor 0.1000"
    unstable = gate_segments(silhouette=0.3, ari_vs_champion=0.2, config=cfg, champion_version="2")
    assert not unstable.promote and "ARI vs champion v2 0.2000 < floor 0.5000" in unstable.reason
    better = gate_segments(
        silhouette=0.3, ari_vs_champion=0.8, config=cfg, champion_version="2", champion_silhouette=0.25
    )
    assert better.promote
    same = gate_segments(
        silhouette=0.3, ari_vs_champion=1.0, config=cfg, champion_version="2", champion_silhouette=0.3
    )
    assert not same.promote and "does not beat champion v2 (0.3000)" in same.reason
    tie = gate_segments(
        silhouette=0.30004, ari_vs_champion=1.0, config=cfg, champion_version="2", champion_silhouette=0.3
    )
    assert not tie.promote


def test_ari_floor_defaults_to_0_8() -> None:
    cfg = GateConfig()
    assert cfg.ari_floor == 0.8
    d = gate_segments(
        silhouette=0.5, ari_vs_champion=0.79, config=cfg, champion_version="1", champion_silhouette=0.1
    )
    assert not d.promote and "< floor 0.8000" in d.reason


def test_uplift_gate_floor_random_ranking_and_champion() -> None:
    from training.registry import gate_uplift

    cfg = GateConfig(margin=0.005, uplift_floor=0.0)
    first = gate_uplift(challenger={"qini": 0.04}, baseline={"qini": 0.01}, champion=None, config=cfg)
    assert first.promote and first.reason.startswith("first model: Qini 0.0400")
    flat = gate_uplift(challenger={"qini": -0.01}, baseline={"qini": -0.05}, champion=None, config=cfg)
    assert not flat.promote and flat.reason == "Qini -0.0100 is not above the floor 0.0000"
    lucky_noise = gate_uplift(challenger={"qini": 0.02}, baseline={"qini": 0.03}, champion=None, config=cfg)
    assert not lucky_noise.promote and "below a random ranking's 0.0300" in lucky_noise.reason
    args = dict(baseline={"qini": 0.0}, config=cfg, champion_version="2")
    close = gate_uplift(challenger={"qini": 0.044}, champion={"qini": 0.040}, **args)
    assert not close.promote and "does not beat champion v2 (0.0400)" in close.reason
    better = gate_uplift(challenger={"qini": 0.046}, champion={"qini": 0.040}, **args)
    assert better.promote and json.loads(better.tags()["gate.compared"])["champion"] == 0.04
    unscored = gate_uplift(challenger={"qini": 0.03}, champion={"qini": float("nan")}, **args)
    assert unscored.promote and "could not be scored" in unscored.reason

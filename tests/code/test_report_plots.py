"""The per-run report's segment plots say what they show: bars and heat-map rows named by segment and
persona; size and share are not plotted as features (issue 15, item 7)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from training import mlflow_io


def test_segment_plots_name_rows_by_persona_and_leave_out_size_and_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles = pd.DataFrame(
        {
            "persona": ["high_value_loyal", "hibernating"],
            "n": [10, 30],
            "share": [0.25, 0.75],
            "recency_days": [5.0, 400.0],
            "monetary_365d": [900.0, 10.0],
        },
        index=pd.Index([0, 1], name="segment_id"),
    )
    seen: dict[str, list] = {}
    real_figure = mlflow_io._figure

    def spy():  # type: ignore[no-untyped-def]
        plt, fig, ax = real_figure()
        seen.setdefault("axes", []).append(ax)
        return plt, fig, ax

    monkeypatch.setattr(mlflow_io, "_figure", spy)
    real_save = mlflow_io._save

    def save(plt, fig, path):  # type: ignore[no-untyped-def]
        ax = fig.axes[0]
        seen[path.name] = {
            "x": [t.get_text() for t in ax.get_xticklabels()],
            "y": [t.get_text() for t in ax.get_yticklabels()],
        }
        return real_save(plt, fig, path)

    monkeypatch.setattr(mlflow_io, "_save", save)
    paths = mlflow_io.segment_plots(profiles=profiles, sizes={"0": 10, "1": 30}, out_dir=tmp_path)
    assert set(paths) == {"sizes", "profiles"} and all(p.is_file() for p in paths.values())
    assert set(seen["segment_sizes.png"]["y"]) == {"0 high_value_loyal", "1 hibernating"}
    heat = seen["segment_profiles.png"]
    assert heat["y"] == ["0 high_value_loyal", "1 hibernating"]
    assert heat["x"] == ["recency_days", "monetary_365d"]  # no n, no share, no persona

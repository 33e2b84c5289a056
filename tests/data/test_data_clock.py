"""The data's clock: `as_of` comes from the data (or is given), never from the wall clock; no label window
passes the data's end; stray future-dated rows neither move the clock nor survive ingest."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from configs.settings import load_settings
from configs.sections.generator import GeneratorConfig
from features.clock import clean_as_of, derive_as_of, features_as_of
from features.synthetic.generate import generate

GENERATOR_END = pd.Timestamp("2026-01-01", tz="UTC")  # the generator's window ends 2025-12-31 (inclusive)


def stamps(*days: str, per_day: int = 1) -> pd.Series:
    return pd.Series(pd.to_datetime(np.repeat(days, per_day), utc=True))


def test_as_of_is_the_latest_activity_ignoring_a_thin_tail_of_strays() -> None:
    busy = pd.Series(pd.date_range("2024-01-01 08:00", "2024-03-31 08:00", freq="D", tz="UTC").repeat(20))
    strays = stamps("2024-07-04", "2025-01-02", "2030-01-01")  # 3 rows typed with a wrong year
    assert derive_as_of({"orders.order_ts": busy, "events.event_ts": strays}) == pd.Timestamp(
        "2024-03-31 08:00", tz="UTC"
    )
    # the same rows, but a real tail (more than 1% of the rows): the data simply goes on, thinly
    tail = pd.Series(pd.date_range("2024-04-01", periods=40, freq="D", tz="UTC"))
    assert derive_as_of({"orders.order_ts": busy, "x.y": tail}) == tail.max()
    # sparse data (a row every few days): every day with a row counts, the clock is the last row
    sparse = stamps("2024-01-01", "2024-01-05", "2024-02-01", "2024-06-30")
    assert derive_as_of({"orders.order_ts": sparse}) == pd.Timestamp("2024-06-30", tz="UTC")
    assert derive_as_of({"orders.order_ts": pd.Series([pd.NaT], dtype="datetime64[ns, UTC]")}) is None


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic company (its sources end 2025-12-31, with a few rows dated up to 400 days
    later, as clock errors), ingested WITHOUT an as_of: the clock must come from the data."""
    from features.ingest import run_ingest

    data_dir = tmp_path_factory.mktemp("clock") / "data"
    generate(GeneratorConfig(customers=800, seed=3), out=data_dir / "raw")
    settings = load_settings(data_dir=str(data_dir))
    assert settings.sources.as_of is None
    return settings, run_ingest(settings)


def test_ingest_takes_the_clock_from_the_data_and_quarantines_strays(generated) -> None:
    from features.ingest import load_clean

    settings, result = generated
    assert not result.as_of_given
    assert GENERATOR_END - pd.Timedelta(days=1) <= result.as_of < GENERATOR_END
    assert clean_as_of(settings) == result.as_of
    q = load_clean(settings, "quarantine")
    future = q[q["rule"] == "timestamp_in_future"]
    assert set(future["source"]) >= {"orders", "events"}
    orders, events = load_clean(settings, "orders"), load_clean(settings, "events")
    limit = result.as_of + pd.Timedelta(hours=settings.sources.future_tolerance_hours)
    assert orders["order_ts"].max() <= limit and events["event_ts"].max() <= limit


def test_no_label_window_passes_the_data_end(generated) -> None:
    """Every labelled snapshot's whole horizon [t, t + horizon) is observed: it ends by the data's
    as_of, which is itself within the generator's window (not the wall clock, not a stray row)."""
    from training.trainsets import labels_for

    settings, result = generated
    horizons = {
        "churn": settings.training.churn_horizon_days,
        "conversion": settings.training.conversion_horizon_days,
    }
    for kind, days in horizons.items():
        labels = labels_for(settings, kind)
        assert len(labels) > 0 and labels["label"].nunique() == 2, kind
        window_end = labels["event_timestamp"].max() + pd.Timedelta(days=days)
        assert window_end <= result.as_of <= GENERATOR_END, kind


def test_snapshots_after_the_data_clock_are_not_built(generated) -> None:
    from features.build import build_features

    settings, result = generated
    report = build_features(settings, snapshots=[date(2025, 11, 1), date(2025, 12, 1), date(2026, 2, 1)])
    assert [t.date() for t in report.snapshots] == [date(2025, 11, 1), date(2025, 12, 1)]
    assert any("1 snapshot(s) after the data's as_of" in n and "2026-02-01" in n for n in report.notes)
    assert features_as_of(settings) == result.as_of == report.as_of

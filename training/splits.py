"""Time-respecting splits of labelled entity frames, purged so no label window reaches into test time.

The last labelled snapshot is the test window; validation is the latest snapshot whose label window
ends by the test snapshot; training takes the snapshots whose label windows end by the validation
snapshot. A customer's future (its label window) therefore never overlaps a later split's feature time.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from core.errors import ValidationFailed


@dataclass(frozen=True)
class TimeSplit:
    """Three entity frames (customer_id, event_timestamp, label) and the snapshots they cover."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    horizon_days: int

    def window(self) -> dict[str, object]:
        """The data window for logging: snapshots and row counts per split."""
        out: dict[str, object] = {}
        for name in ("train", "valid", "test"):
            frame: pd.DataFrame = getattr(self, name)
            ts = frame["event_timestamp"]
            out[f"{name}_rows"] = len(frame)
            out[f"{name}_first_snapshot"] = ts.min().isoformat() if len(frame) else ""
            out[f"{name}_last_snapshot"] = ts.max().isoformat() if len(frame) else ""
            if "label" in frame:
                out[f"{name}_positive_rate"] = round(float(frame["label"].mean()), 6) if len(frame) else 0.0
        return out


def time_split(labels: pd.DataFrame, *, horizon_days: int) -> TimeSplit:
    """Split labelled rows by snapshot (see module doc). Raises ValidationFailed when there are too few
    snapshots for three purged splits."""
    horizon = pd.Timedelta(days=horizon_days)
    snaps = sorted(labels["event_timestamp"].unique())
    if not snaps:
        raise ValidationFailed("no labelled snapshots: the data ends before any snapshot's label horizon")
    test_t = pd.Timestamp(snaps[-1])
    valid_candidates = [pd.Timestamp(s) for s in snaps if pd.Timestamp(s) + horizon <= test_t]
    if not valid_candidates:
        raise ValidationFailed(
            f"only {len(snaps)} labelled snapshot(s) ({_fmt(snaps)}) and none ends its {horizon_days}-day "
            f"label window by the test snapshot {test_t.date()}",
            hint="widen features.first_snapshot..last_snapshot or shorten the horizon",
        )
    valid_t = valid_candidates[-1]
    train_ts = [pd.Timestamp(s) for s in snaps if pd.Timestamp(s) + horizon <= valid_t]
    if not train_ts:
        raise ValidationFailed(
            f"no training snapshot ends its {horizon_days}-day label window by the validation snapshot "
            f"{valid_t.date()} (labelled snapshots: {_fmt(snaps)})",
            hint="widen features.first_snapshot..last_snapshot or shorten the horizon",
        )
    ts = labels["event_timestamp"]
    split = TimeSplit(
        train=labels[ts.isin(train_ts)].reset_index(drop=True),
        valid=labels[ts == valid_t].reset_index(drop=True),
        test=labels[ts == test_t].reset_index(drop=True),
        horizon_days=horizon_days,
    )
    assert_no_leak(split)
    return split


def assert_no_leak(split: TimeSplit) -> None:
    """Raise ValidationFailed if a row's label window [t, t + horizon) reaches past the feature time of a
    later split's row for the same customer (its future would leak into training)."""
    horizon = pd.Timedelta(days=split.horizon_days)
    pairs = (
        ("train", split.train, "valid", split.valid),
        ("train", split.train, "test", split.test),
        ("valid", split.valid, "test", split.test),
    )
    for early_name, early, late_name, late in pairs:
        if early.empty or late.empty:
            continue
        joined = early[["customer_id", "event_timestamp"]].merge(
            late[["customer_id", "event_timestamp"]], on="customer_id", suffixes=("_early", "_late")
        )
        leak = joined[joined["event_timestamp_early"] + horizon > joined["event_timestamp_late"]]
        if not leak.empty:
            row = leak.iloc[0]
            raise ValidationFailed(
                f"time leak: customer {row['customer_id']} has a {early_name} label window from "
                f"{row['event_timestamp_early'].date()} ({split.horizon_days} days) reaching past its "
                f"{late_name} snapshot {row['event_timestamp_late'].date()} ({len(leak)} such rows)"
            )


def _fmt(snaps: list) -> str:
    return ", ".join(str(pd.Timestamp(s).date()) for s in snaps)

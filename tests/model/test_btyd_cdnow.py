"""BG/NBD and Gamma-Gamma on the real CDNOW data with the classic protocol (39-week calibration from
1997-01-01, same-day purchases merged, weeks): the estimates land near the published ones.

Published (the 1/10 CDNOW sample, 2,357 customers): BG/NBD r=0.243, alpha=4.414, a=0.793, b=2.426
(Fader, Hardie & Lee 2005); Gamma-Gamma p=6.25, q=3.74, v=15.44 (Fader & Hardie 2013, also CLVTools'
correctness test). The full file holds ten times the customers of the same cohort, so its estimates
agree within sampling error, not to the digit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.btyd import fit_bgnbd, fit_gamma_gamma
from training.datasets import shared_data_dir

CDNOW = shared_data_dir() / "cdnow" / "CDNOW_master.txt"
pytestmark = pytest.mark.skipif(not CDNOW.is_file(), reason=f"CDNOW not found at {CDNOW}")


@pytest.fixture(scope="module")
def calibration():
    raw = pd.read_csv(CDNOW, sep=r"\s+", skiprows=1, header=None, names=["id", "date", "n", "v"], dtype=str)
    raw["date"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    raw["v"] = raw["v"].astype(float)
    days = raw.groupby(["id", "date"], as_index=False)["v"].sum()  # same-day purchases merged
    end = pd.Timestamp("1997-09-30")
    cal = days[days["date"] <= end].sort_values(["id", "date"])
    g = cal.groupby("id")
    first, last, n = g["date"].min(), g["date"].max(), g.size()
    repeat_spend = g["v"].sum() - g["v"].first()
    return {
        "x": (n - 1).to_numpy(float),
        "t_x": ((last - first).dt.days / 7).to_numpy(),
        "T": ((end - first).dt.days / 7).to_numpy(),
        "m": (repeat_spend / (n - 1).where(n > 1)).to_numpy(),
    }


def test_bgnbd_estimates_near_the_published(calibration):
    assert len(calibration["x"]) == 23_570
    fit = fit_bgnbd(x=calibration["x"], t_x=calibration["t_x"], T=calibration["T"])
    assert fit.r == pytest.approx(0.243, rel=0.1)
    assert fit.alpha == pytest.approx(4.414, rel=0.15)
    assert fit.a == pytest.approx(0.793, rel=0.15)
    assert fit.b == pytest.approx(2.426, rel=0.15)


def test_gamma_gamma_estimates_near_the_published(calibration):
    repeat = calibration["x"] > 0
    fit = fit_gamma_gamma(x=calibration["x"][repeat], m=calibration["m"][repeat])
    assert fit.p == pytest.approx(6.25, rel=0.1)
    assert fit.q == pytest.approx(3.74, rel=0.1)
    assert fit.v == pytest.approx(15.44, rel=0.1)
    assert np.isfinite(fit.log_likelihood)

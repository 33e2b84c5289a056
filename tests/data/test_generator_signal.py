"""The generated data carries real signal: churn, conversion and archetypes show in the sources."""

from __future__ import annotations

import pandas as pd
import pytest

from configs.sections.generator import GeneratorConfig
from features.synthetic import generate

END = pd.Timestamp("2026-01-01", tz="UTC")
DAYS = pd.Timedelta(days=1)


def _ts(column: pd.Series) -> pd.Series:
    """Parse mixed ISO text: naive values are UTC. (pandas' format="ISO8601" parse of a mixed column gives a
    naive value the offset of the value before it, so naive and offset values are parsed apart.)"""
    text = column.astype("string")
    aware = text.str.contains(r"(?:Z|[+-]\d{2}:\d{2})$", na=False)
    naive = text.notna() & ~aware
    out = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns, UTC]")
    out[aware] = pd.to_datetime(text[aware], format="ISO8601", utc=True)
    out[naive] = pd.to_datetime(text[naive], format="ISO8601").dt.tz_localize("UTC")
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("signal") / "raw"
    generate(GeneratorConfig(customers=2000, seed=21), out=out)
    pm = pd.read_parquet(out / "ground_truth" / "person_map.parquet")
    persons = pd.read_parquet(out / "ground_truth" / "persons.parquet")

    def read(name: str, source: str, key: str, ts: str) -> pd.DataFrame:
        frame = pd.read_csv(out / name, dtype=str, keep_default_na=False, na_values=[""]).drop_duplicates()
        frame["ts"] = _ts(frame[ts])
        truth = pm.loc[pm["source"] == source, ["record_id", "person_id"]]
        return frame.merge(truth, left_on=key, right_on="record_id")[lambda d: d["ts"] < END]

    orders = read("orders.csv.gz", "orders", "order_id", "order_ts")
    orders["amount"] = orders["amount"].astype(float)
    orders["discount"] = orders["discount"].astype(float).fillna(0.0)
    return {
        "persons": persons,
        "orders": orders,
        "events": read("events.csv.gz", "events", "event_id", "event_ts"),
        "leads": read("leads.csv", "leads", "lead_id", "created_at"),
    }


def _churners(data: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Persons who churned inside the window with at least 180 days of activity before it."""
    p = data["persons"]
    start = pd.Timestamp("2024-01-01", tz="UTC")
    active_from = p["signup_at"].where(p["signup_at"] > start, start)
    churners = p[p["churn_at"].notna() & (p["churn_at"] - active_from > 180 * DAYS)]
    assert len(churners) > 100
    return churners


def _count_between(frame: pd.DataFrame, anchors: pd.Series, lo: int, hi: int) -> pd.Series:
    """Rows per person with ts in [anchor - lo days, anchor - hi days)."""
    joined = frame.merge(anchors.rename("anchor"), left_on="person_id", right_index=True)
    inside = (joined["ts"] >= joined["anchor"] - lo * DAYS) & (joined["ts"] < joined["anchor"] - hi * DAYS)
    return joined[inside].groupby("person_id").size().reindex(anchors.index, fill_value=0)


def test_churners_order_less_before_they_churn_and_then_stop(data: dict[str, pd.DataFrame]) -> None:
    churn = _churners(data).set_index("person_id")["churn_at"]
    last_90 = _count_between(data["orders"], churn, 90, 0)
    previous_90 = _count_between(data["orders"], churn, 180, 90)
    assert last_90.mean() < 0.75 * previous_90.mean()
    after = _count_between(data["orders"], churn, 0, -400)
    assert after.sum() == 0


def test_no_order_before_sign_up_or_after_churn(data: dict[str, pd.DataFrame]) -> None:
    orders = data["orders"].merge(data["persons"][["person_id", "signup_at", "churn_at"]], on="person_id")
    assert (orders["ts"] >= orders["signup_at"]).all()
    churned = orders[orders["churn_at"].notna()]
    assert (churned["ts"] < churned["churn_at"]).all()


def test_churners_complain_and_return_more_before_churn(data: dict[str, pd.DataFrame]) -> None:
    churners = _churners(data)
    churn = churners.set_index("person_id")["churn_at"]
    complaints = data["events"][data["events"]["event_type"] == "complaint"]
    before = _count_between(complaints, churn, 90, 0).mean()
    earlier = _count_between(complaints, churn, 365, 275).mean()
    assert before > 2 * earlier
    orders = data["orders"].merge(churn.rename("churn_at"), left_on="person_id", right_index=True, how="left")
    late = orders["churn_at"].notna() & (orders["ts"] >= orders["churn_at"] - 90 * DAYS)
    returned = orders["status"] == "returned"
    assert returned[late].mean() > 1.5 * returned[orders["churn_at"].isna()].mean()


def test_converted_leads_are_more_engaged(data: dict[str, pd.DataFrame]) -> None:
    leads = data["leads"].drop_duplicates("lead_id")
    leads = leads[leads["ts"] < END - 90 * DAYS]
    engagement = leads["engagement_score"].astype(int).clip(0, 100)
    converted = leads["converted"] == "1"
    assert engagement[converted].mean() > engagement[~converted].mean() + 8
    # Web visits in the two weeks after a lead came in: converters browse more.
    visits = data["events"][data["events"]["event_type"] == "visit"]
    created = leads.set_index("person_id")["ts"]
    early_visits = _count_between(visits, created + 14 * DAYS, 14, 0)
    assert early_visits[converted.values].mean() > 1.3 * early_visits[~converted.values].mean()


def test_conversion_within_60_days_is_a_meaningful_minority(data: dict[str, pd.DataFrame]) -> None:
    leads = data["leads"].drop_duplicates("lead_id")
    leads = leads[leads["ts"] < END - 60 * DAYS]
    converted_at = _ts(leads["converted_at"])
    within = (converted_at - leads["ts"]) <= 60 * DAYS
    assert 0.18 < within.mean() < 0.38
    assert (converted_at.dropna() > leads.loc[converted_at.notna(), "ts"]).all()


def test_converted_leads_become_ordering_customers_and_prospects_never_order(
    data: dict[str, pd.DataFrame],
) -> None:
    persons = data["persons"].set_index("person_id")
    buyers = set(data["orders"]["person_id"])
    prospects = persons.index[persons["archetype"] == "prospect"]
    assert len(prospects) > 100 and not buyers & set(prospects)
    converted = persons.index[persons["converted_at"].notna() & (persons["converted_at"] < END - 90 * DAYS)]
    assert len(converted) > 30
    assert len(buyers & set(converted)) / len(converted) > 0.8
    first_order = data["orders"].groupby("person_id")["ts"].min().reindex(converted).dropna()
    assert (first_order >= persons.loc[first_order.index, "converted_at"] - DAYS).all()


def test_archetypes_are_distinct_groups(data: dict[str, pd.DataFrame]) -> None:
    orders = data["orders"].merge(data["persons"][["person_id", "archetype"]], on="person_id")
    by_type = orders.groupby("archetype")
    discount_share = by_type.apply(lambda g: (g["discount"] > 0).mean(), include_groups=False)
    assert discount_share["bargain_hunter"] > 2 * discount_share.drop("bargain_hunter").max()
    per_person = orders.groupby(["archetype", "person_id"]).size().groupby("archetype").mean()
    assert per_person["high_value_loyal"] > 1.8 * per_person["regular"]
    assert per_person["dormant"] < 0.5 * per_person["regular"]
    spend = by_type["amount"].median()
    assert spend["high_value_loyal"] > 1.5 * spend["bargain_hunter"]
    persons = data["persons"]
    new = persons.loc[persons["archetype"] == "new", "signup_at"]
    assert (new > pd.Timestamp("2025-06-01", tz="UTC")).all()


def test_churn_positive_rate_on_30_day_snapshots(data: dict[str, pd.DataFrame]) -> None:
    """Customers who bought in the year before a snapshot and buy nothing in the 90 days after it."""
    orders = data["orders"]
    rates = []
    for snapshot in pd.date_range("2024-07-01", "2025-10-01", freq="30D", tz="UTC"):
        before = set(
            orders.loc[(orders["ts"] < snapshot) & (orders["ts"] >= snapshot - 365 * DAYS), "person_id"]
        )
        after = set(
            orders.loc[(orders["ts"] >= snapshot) & (orders["ts"] < snapshot + 90 * DAYS), "person_id"]
        )
        rates.append(len(before - after) / len(before))
    assert 0.15 < sum(rates) / len(rates) < 0.35
    assert min(rates) > 0.1  # churn happens throughout, not in one burst

"""The generator runs campaigns too: outcomes of assigned customers with a known, heterogeneous
treatment effect, so the evaluation and the uplift model can be checked against the truth.

Effects are additive on the probability of the outcome (an order within the window) and depend on the
customer's persona: some respond, some do not, a few react badly (do-not-disturb).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.synthetic.vocab import CATEGORIES

# Persona -> (probability of an order in the window without treatment, true effect of the treatment).
TRUE_EFFECTS: dict[str, tuple[float, float]] = {
    "at_risk": (0.08, 0.10),  # persuadable: a win-back offer works
    "bargain_hunter": (0.15, 0.06),
    "high_value_loyal": (0.45, 0.0),  # sure things: they buy anyway
    "dormant": (0.02, 0.0),  # lost causes
    "complainer": (0.12, -0.06),  # do-not-disturb: contact puts them off
}
DEFAULT = (0.10, 0.02)
_OUTCOME_STREAM, _ORDER_STREAM = 0xC0, 0xC1


def true_effect(
    personas: pd.Series | np.ndarray, effects: Mapping[str, tuple[float, float]] = TRUE_EFFECTS
) -> tuple[np.ndarray, np.ndarray]:
    """(base probability, true effect) per customer from their persona."""
    p = pd.Series(personas).map(lambda x: effects.get(x, DEFAULT))
    return np.array([b for b, _ in p]), np.array([e for _, e in p])


def simulate_outcomes(
    arms: pd.Series | np.ndarray,
    personas: pd.Series | np.ndarray,
    *,
    control: str,
    seed: int,
    effects: Mapping[str, tuple[float, float]] = TRUE_EFFECTS,
) -> np.ndarray:
    """0/1 outcome per customer: an order in the window, with probability base + effect if treated."""
    base, effect = true_effect(personas, effects)
    treated = np.asarray(arms) != control
    # A stream of its own: a bare `default_rng(seed)` would repeat the draws that chose the personas.
    rng = np.random.default_rng([seed, _OUTCOME_STREAM])
    return (rng.random(base.size) < np.clip(base + effect * treated, 0, 1)).astype(int)


def simulate_orders(
    customer_ids: pd.Series | np.ndarray,
    outcome: np.ndarray,
    *,
    start: pd.Timestamp,
    window_days: int,
    seed: int,
    order_prefix: str = "CAMP",
) -> pd.DataFrame:
    """Clean-shaped orders (docs/CONTRACTS.md) for the customers whose outcome is 1, at random times
    inside the window."""
    rng = np.random.default_rng([seed, _ORDER_STREAM])
    ids = np.asarray(customer_ids, dtype=object)[np.asarray(outcome) == 1]
    offsets = pd.to_timedelta(rng.random(ids.size) * window_days * 86400, unit="s")
    return pd.DataFrame(
        {
            "order_id": [f"{order_prefix}{i:08d}" for i in range(ids.size)],
            "customer_id": ids,
            "order_ts": (start + offsets).astype("datetime64[us, UTC]"),
            "amount": np.round(rng.gamma(2.0, 30.0, ids.size), 2),
            "discount": 0.0,
            "quantity": 1,
            "category": "campaign",
            "is_returned": False,
            "is_cancelled": False,
        }
    )


# ------------------------------------------------------------------ outcomes into the raw sources
# A true person who complains this often (about the top tenth of customers) is put off by contact: the
# generator's do-not-disturb group, whatever their archetype.
COMPLAINER_RATE_30D = 0.025
CAMPAIGN_ORDER_PREFIX = "OC"


def true_personas(customer_ids: Sequence[str], *, identity_map: pd.DataFrame, raw_dir: Path) -> pd.Series:
    """The generator's truth for Persona customers: each customer's true person (the one most of their
    source records belong to, from the ground truth written beside the sources) and its archetype, or
    `complainer` for frequent complainers. Indexed by customer id; None where no record is known."""
    from features.synthetic.generate import PERSON_MAP_FILE, PERSONS_FILE

    person_map = pd.read_parquet(raw_dir / PERSON_MAP_FILE).astype({"source": str, "person_id": str})
    persons = pd.read_parquet(
        raw_dir / PERSONS_FILE, columns=["person_id", "archetype", "complaints_per_30d"]
    )
    records = identity_map[identity_map.customer_id.isin(set(customer_ids))][
        ["customer_id", "source", "source_record_id"]
    ].merge(person_map, left_on=["source", "source_record_id"], right_on=["source", "record_id"])
    person = records.groupby("customer_id").person_id.agg(lambda s: s.value_counts().index[0])
    truth = persons.set_index("person_id")
    persona = truth.archetype.where(truth.complaints_per_30d < COMPLAINER_RATE_30D, "complainer")
    return person.map(persona).reindex(pd.Index(list(customer_ids), name="customer_id"))


def _order_refs(
    customer_ids: Sequence[str], *, identity_map: pd.DataFrame, raw_orders: pd.DataFrame
) -> pd.Series:
    """How the ERP knows each customer: the reference on their latest order (None without one)."""
    theirs = identity_map[
        (identity_map.source == "orders") & identity_map.customer_id.isin(set(customer_ids))
    ]
    refs = theirs.merge(
        raw_orders[["order_id", "customer_ref"]], left_on="source_record_id", right_on="order_id"
    )
    refs = refs[refs.customer_ref.notna() & (refs.customer_ref != "")]
    latest = refs.sort_values("order_id").groupby("customer_id").customer_ref.last()
    return latest.reindex(pd.Index(list(customer_ids), name="customer_id"))


@dataclass
class CampaignOutcomes:
    """What a simulated campaign added to the raw orders."""

    orders: int
    customers: int
    unknown: int  # assigned customers the ground truth or the ERP does not know (no outcome simulated)
    true_effect: float  # the audience's mean true effect on the outcome probability


def write_campaign_orders(
    raw_dir: Path,
    *,
    campaign: str,
    assigned: pd.DataFrame,
    identity_map: pd.DataFrame,
    control: str,
    start: pd.Timestamp,
    window_days: int,
    seed: int,
    effects: Mapping[str, tuple[float, float]] = TRUE_EFFECTS,
) -> CampaignOutcomes:
    """Simulate the campaign's outcome for each assigned customer (`customer_id`, `arm`) from their true
    persona and append the resulting orders to `raw_dir/orders.csv.gz` as the ERP writes them (referenced
    by the customer's email or phone), so they flow through ingest like any order. Running it again
    replaces the campaign's earlier orders (same seed: the same rows)."""
    from features.synthetic.generate import ORDERS_FILE

    path = raw_dir / ORDERS_FILE
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    prefix = f"{CAMPAIGN_ORDER_PREFIX}-{campaign}-"
    raw = raw[~raw.order_id.str.startswith(prefix)]
    ids = assigned.customer_id.astype(str).tolist()
    personas = true_personas(ids, identity_map=identity_map, raw_dir=raw_dir)
    refs = _order_refs(ids, identity_map=identity_map, raw_orders=raw)
    known = personas.notna().to_numpy() & refs.notna().to_numpy()
    frame = assigned.assign(persona=personas.to_numpy(), ref=refs.to_numpy())[known].reset_index(drop=True)
    outcome = simulate_outcomes(frame.arm, frame.persona, control=control, seed=seed, effects=effects)
    orders = simulate_orders(frame.customer_id, outcome, start=start, window_days=window_days, seed=seed)
    ref_of = frame.set_index("customer_id").ref
    rng = np.random.default_rng([seed, _ORDER_STREAM, 1])
    new = pd.DataFrame(
        {
            "order_id": [f"{prefix}{i:06d}" for i in range(len(orders))],
            "customer_ref": ref_of.reindex(orders.customer_id).to_numpy(),
            "order_ts": orders.order_ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "amount": orders.amount.map("{:.2f}".format),
            "discount": "0.00",
            "quantity": "1",
            "category": rng.choice(CATEGORIES, len(orders)),
            "status": "completed",
        }
    )
    out = pd.concat([raw, new[raw.columns]], ignore_index=True)
    tmp = path.with_name(path.name + ".tmp")
    out.to_csv(tmp, index=False, compression="gzip")
    tmp.replace(path)
    _, tau = true_effect(frame.persona, effects)
    return CampaignOutcomes(
        orders=len(new),
        customers=len(frame),
        unknown=int((~known).sum()),
        true_effect=float(tau.mean()) if len(tau) else float("nan"),
    )

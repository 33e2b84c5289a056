"""The streaming generator: a population written in chunks has the same schema, unique ids and
identities across chunks, complete ground truth and the same statistics as one written at once."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs.sections.generator import GeneratorConfig
from features.synthetic import pii
from features.synthetic.generate import chunk_bounds, generate

N = 2400
CHUNK = 500  # 5 chunks, the last one short


def _read(raw: Path) -> dict[str, pd.DataFrame]:
    with sqlite3.connect(raw / "crm.sqlite") as con:
        contacts = pd.read_sql("SELECT * FROM contacts", con)
    csv = {"dtype": str, "keep_default_na": False, "na_values": [""]}
    return {
        "contacts": contacts,
        "orders": pd.read_csv(raw / "orders.csv.gz", **csv),
        "events": pd.read_csv(raw / "events.csv.gz", **csv),
        "leads": pd.read_csv(raw / "leads.csv", **csv),
        "person_map": pd.read_parquet(raw / "ground_truth" / "person_map.parquet"),
        "persons": pd.read_parquet(raw / "ground_truth" / "persons.parquet"),
        "prefs": pd.read_parquet(raw / "ground_truth" / "category_preferences.parquet"),
    }


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, pd.DataFrame]]:
    root = tmp_path_factory.mktemp("chunks")
    config = GeneratorConfig(customers=N, seed=23)
    generate(config, out=root / "whole")
    summary = generate(config, out=root / "chunked", chunk_persons=CHUNK)
    assert summary.persons == N
    return {"whole": _read(root / "whole"), "chunked": _read(root / "chunked"), "root": root}  # type: ignore[dict-item]


def test_chunk_bounds_cover_the_population_once() -> None:
    assert chunk_bounds(2400, 500) == [(0, 500), (500, 500), (1000, 500), (1500, 500), (2000, 400)]
    assert chunk_bounds(3, 10) == [(0, 3)]


def test_same_schema_and_sequential_ids(both: dict) -> None:
    whole, chunked = both["whole"], both["chunked"]
    for name in ("contacts", "orders", "events", "leads", "person_map", "persons", "prefs"):
        assert list(chunked[name].columns) == list(whole[name].columns), name
        assert dict(chunked[name].dtypes) == dict(whole[name].dtypes), name
    for source, key, prefix, width in (
        ("contacts", "contact_id", "C", 7),
        ("orders", "order_id", "O", 8),
        ("events", "event_id", "E", 9),
        ("leads", "lead_id", "L", 7),
    ):
        ids = chunked[source][key].drop_duplicates()
        expected = [f"{prefix}{i:0{width}d}" for i in range(1, len(ids) + 1)]
        assert sorted(ids) == expected, source  # ids continue across chunks: no gap, no repeat
    assert list(chunked["persons"]["person_id"]) == [f"T{i:07d}" for i in range(1, N + 1)]


def test_ground_truth_is_complete_and_points_at_the_right_person(both: dict) -> None:
    d = both["chunked"]
    pm = d["person_map"]
    assert not pm.duplicated(["source", "record_id"]).any()
    for source, key in (("contacts", "contact_id"), ("orders", "order_id"), ("events", "event_id")):
        assert set(pm.loc[pm["source"] == source, "record_id"]) == set(d[source][key]), source
    assert set(pm["person_id"]) <= set(d["persons"]["person_id"])
    # Logged-in events name a contact of their own person, also for persons of later chunks.
    person_of = pm.set_index(["source", "record_id"])["person_id"]
    events = d["events"].drop_duplicates()
    by_contact = events[events["user_ref"].str.fullmatch(r"C\d{7}", na=False)]
    event_person = person_of.loc["events"].reindex(by_contact["event_id"]).to_numpy()
    contact_person = person_of.loc["contacts"].reindex(by_contact["user_ref"]).to_numpy()
    assert len(by_contact) > 0 and (event_person == contact_person).all()
    late = pd.Series(event_person).str[1:].astype(int) > CHUNK
    assert late.mean() > 0.5  # most of them are in chunks after the first


def test_identities_stay_unique_across_chunks(both: dict) -> None:
    contacts = both["chunked"]["contacts"]
    pm = both["chunked"]["person_map"].set_index(["source", "record_id"])["person_id"]
    keyed = contacts.assign(
        person=pm.loc["contacts"].reindex(contacts["contact_id"]).to_numpy(),
        email_key=contacts["email"].str.strip().str.lower(),
        phone_key=contacts["phone"].str.replace(r"\D", "", regex=True).str[-11:],
    )
    for key in ("email_key", "phone_key"):
        owners = keyed.dropna(subset=[key]).groupby(key)["person"].nunique()
        assert (owners == 1).all(), f"{key} shared by two persons: {owners[owners > 1].index[:3].tolist()}"
    rng = np.random.default_rng(0)
    a = pii.make_identities(rng, 300)
    b = pii.make_identities(rng, 300, first=300, phone_offset=a.phone_offset)
    emails = a.email.to_pylist() + b.email.to_pylist()
    assert len(set(emails)) == 600
    assert len(set(np.concatenate([a.phone, b.phone]) % 10**8)) == 600


def test_statistics_and_ground_truth_agree_with_the_unchunked_run(both: dict) -> None:
    whole, chunked = both["whole"], both["chunked"]
    for name in ("orders", "events", "contacts", "leads"):
        ratio = len(chunked[name]) / len(whole[name])
        assert 0.85 < ratio < 1.15, (name, ratio)
    shares = [d["persons"]["archetype"].value_counts(normalize=True) for d in (whole, chunked)]
    assert (shares[0] - shares[1]).abs().max() < 0.04
    for column in ("is_customer", "consent_withdrawn", "orders_per_30d", "median_order_amount"):
        a, b = (float(d["persons"][column].astype(float).mean()) for d in (whole, chunked))
        assert abs(a - b) <= 0.1 * abs(a) + 0.01, (column, a, b)
    assert len(chunked["prefs"]) == int(chunked["persons"]["is_customer"].sum())


def test_chunked_output_is_deterministic(both: dict, tmp_path: Path) -> None:
    generate(GeneratorConfig(customers=N, seed=23), out=tmp_path / "again", chunk_persons=CHUNK)

    def digest(folder: Path) -> dict[str, str]:
        return {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    assert digest(tmp_path / "again") == digest(both["root"] / "chunked")

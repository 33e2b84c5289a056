"""The generated sources: contract schemas, reproducibility, realistic mess, complete ground truth."""

from __future__ import annotations

import gzip
import hashlib
import os
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs.sections.generator import GeneratorConfig
from features.synthetic import generate, writers
from features.vocabulary import EVENT_TYPES
from core.errors import PersonaError

N = 1500
END = pd.Timestamp("2026-01-01", tz="UTC")  # end 2025-12-31 is inclusive

CONTACT_COLUMNS = [
    "contact_id",
    "full_name",
    "phone",
    "email",
    "region",
    "city",
    "signup_date",
    "acquisition_channel",
    "customer_type",
    "consent_profiling",
    "last_updated",
]
ORDER_COLUMNS = [
    "order_id",
    "customer_ref",
    "order_ts",
    "amount",
    "discount",
    "quantity",
    "category",
    "status",
]
EVENT_COLUMNS = ["event_id", "user_ref", "event_type", "event_ts", "channel"]
LEAD_COLUMNS = [
    "lead_id",
    "email",
    "phone",
    "source",
    "campaign",
    "created_at",
    "engagement_score",
    "converted",
    "converted_at",
]
PHONE_PATTERNS = {
    "plain": r"^1[358]\d{9}$",
    "dashed": r"^\+86 1[358]\d-\d{4}-\d{4}$",
    "0086": r"^0086 1[358]\d{9}$",
    "+86": r"^\+861[358]\d{9}$",
    "spaced": r"^1[358]\d \d{4} \d{4}$",
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "raw"
    generate(GeneratorConfig(customers=N, seed=11), out=out)
    return out


@pytest.fixture(scope="module")
def sources(raw: Path) -> dict[str, pd.DataFrame]:
    with sqlite3.connect(raw / "crm.sqlite") as con:
        contacts = pd.read_sql("SELECT * FROM contacts", con)
    return {
        "contacts": contacts,
        "orders": pd.read_csv(raw / "orders.csv.gz", dtype=str, keep_default_na=False, na_values=[""]),
        "events": pd.read_csv(raw / "events.csv.gz", dtype=str, keep_default_na=False, na_values=[""]),
        "leads": pd.read_csv(raw / "leads.csv", dtype=str, keep_default_na=False, na_values=[""]),
        "person_map": pd.read_parquet(raw / "ground_truth" / "person_map.parquet"),
        "persons": pd.read_parquet(raw / "ground_truth" / "persons.parquet"),
    }


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


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


def test_files_and_columns_match_the_contract(raw: Path, sources: dict[str, pd.DataFrame]) -> None:
    assert sorted(_hashes(raw)) == sorted(
        [
            "crm.sqlite",
            "orders.csv.gz",
            "events.csv.gz",
            "leads.csv",
            "ground_truth/person_map.parquet",
            "ground_truth/persons.parquet",
            "ground_truth/category_preferences.parquet",
        ]
    )
    assert list(sources["contacts"].columns) == CONTACT_COLUMNS
    assert list(sources["orders"].columns) == ORDER_COLUMNS
    assert list(sources["events"].columns) == EVENT_COLUMNS
    assert list(sources["leads"].columns) == LEAD_COLUMNS
    assert list(sources["person_map"].columns) == ["source", "record_id", "person_id"]
    persons = sources["persons"]
    for column in [
        "person_id",
        "archetype",
        "churn_at",
        "converted_at",
        "is_customer",
        "consent_withdrawn",
        "orders_per_30d",
        "lead_engagement",
    ]:
        assert column in persons.columns
    assert str(persons["churn_at"].dtype) == "datetime64[us, UTC]"
    assert len(persons) == N


def test_values_are_in_their_vocabularies(sources: dict[str, pd.DataFrame]) -> None:
    orders, events, contacts, leads = (sources[k] for k in ("orders", "events", "contacts", "leads"))
    assert set(orders["status"]) == {"completed", "returned", "cancelled"}
    assert set(events["event_type"]) == set(EVENT_TYPES)  # every type of the contract, nothing else
    assert set(events["channel"].dropna()) == {"web", "app", "email", "support"}
    assert set(contacts["consent_profiling"].dropna()) == {"Y", "N"}
    assert contacts["contact_id"].str.fullmatch(r"C\d{7}").all()
    assert orders["order_id"].str.fullmatch(r"O\d{8}").all()
    assert set(leads["converted"]) == {"0", "1"}
    assert (leads["converted"] == "1").eq(leads["converted_at"].notna()).all()
    # Only synthetic PII: example.* domains and 13x/15x/18x mobiles.
    emails = pd.concat([contacts["email"], leads["email"]]).dropna().str.strip().str.lower()
    assert emails.str.fullmatch(r"[a-z_.0-9]+@example\.(com|net|org)").all()
    digits = contacts["phone"].dropna().str.replace(r"\D", "", regex=True).str[-11:]
    assert digits.str.fullmatch(r"1[358]\d{9}").all()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    config = GeneratorConfig(customers=300, seed=5)
    generate(config, out=tmp_path / "a")
    # The second run in another process with another hash seed: nothing may depend on either.
    script = (
        "import sys; from configs.sections.generator import GeneratorConfig; from features.synthetic import generate; "
        "generate(GeneratorConfig(customers=300, seed=5), out=sys.argv[1])"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "b")],
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},
    )
    generate(config.model_copy(update={"seed": 6}), out=tmp_path / "c")
    a, b, c = (_hashes(tmp_path / x) for x in "abc")
    assert len(a) == 7  # the six sources and ground-truth files + category preferences
    assert a == b
    assert all(a[name] != c[name] for name in a)
    # gzip headers carry no time stamp or file name.
    with open(tmp_path / "a" / "orders.csv.gz", "rb") as f:
        header = f.read(10)
    assert header[4:8] == b"\0\0\0\0"
    assert gzip.decompress((tmp_path / "a" / "orders.csv.gz").read_bytes()).startswith(b'"order_id"')


def test_phone_formats_are_mixed(sources: dict[str, pd.DataFrame]) -> None:
    phones = sources["contacts"]["phone"].dropna()
    shares = {name: phones.str.fullmatch(pattern).mean() for name, pattern in PHONE_PATTERNS.items()}
    assert sum(shares.values()) == pytest.approx(1.0)  # every phone is one of the known formats
    assert all(share > 0.03 for share in shares.values()), shares
    refs = sources["orders"]["customer_ref"].dropna()
    phone_refs = refs[~refs.str.contains("@")]
    assert 0.2 < len(phone_refs) / len(refs) < 0.5
    assert phone_refs.str.fullmatch(r"^1[358]\d{9}$").mean() > 0.5  # the ERP mostly stores plain numbers


def test_emails_have_case_and_space_noise(sources: dict[str, pd.DataFrame]) -> None:
    refs = sources["orders"]["customer_ref"].dropna()
    emails = refs[refs.str.contains("@")]
    spaced = (emails != emails.str.strip()).mean()
    cased = (emails.str.strip() != emails.str.strip().str.lower()).mean()
    assert 0.005 < spaced < 0.05
    assert 0.01 < cased < 0.08


def test_duplicates_and_impossible_values_are_a_few_percent(sources: dict[str, pd.DataFrame]) -> None:
    orders, events, leads = sources["orders"], sources["events"], sources["leads"]
    order_dups = orders.duplicated().mean()
    assert 0.004 < order_dups < 0.02
    assert orders["order_id"].duplicated().sum() == orders.duplicated().sum()  # re-sent rows are exact
    assert 0.003 < events.duplicated().mean() < 0.015
    assert leads["lead_id"].duplicated().sum() == leads.duplicated().sum()
    amount = orders["amount"].astype(float)
    assert 0.001 < (amount < 0).mean() < 0.008
    assert 0.0005 < (_ts(orders["order_ts"]) >= END).mean() < 0.006
    assert 0 < (_ts(events["event_ts"]) >= END).mean() < 0.004
    assert orders["customer_ref"].isna().mean() < 0.01
    assert 0 < orders["category"].isna().mean() < 0.03
    engagement = leads["engagement_score"].astype(int)
    assert engagement.between(0, 100).mean() > 0.98


def test_time_zones_are_mixed(sources: dict[str, pd.DataFrame]) -> None:
    for column in (
        sources["orders"]["order_ts"],
        sources["events"]["event_ts"],
        sources["leads"]["created_at"],
    ):
        offset = column.str.endswith("+08:00").mean()
        zulu = column.str.endswith("Z").mean()
        naive = column.str.fullmatch(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}").mean()
        assert min(offset, zulu, naive) > 0.05
        assert offset + zulu + naive == pytest.approx(1.0)
    signup = sources["contacts"]["signup_date"]
    assert signup.str.fullmatch(r"\d{4}-\d{2}-\d{2}").mean() > 0.05  # some CRM dates have no time


def test_crm_has_duplicate_persons_and_withdrawn_consent(sources: dict[str, pd.DataFrame]) -> None:
    contact_map = sources["person_map"].query("source == 'contacts'")
    per_person = contact_map["person_id"].value_counts()
    assert per_person.max() == 2
    assert 0.01 < (per_person == 2).mean() < 0.08
    contacts = sources["contacts"]
    assert 0.01 < (contacts["consent_profiling"] == "N").mean() < 0.06
    assert contacts["consent_profiling"].isna().mean() > 0.1  # NULL = never asked = allowed
    # Every contact can be found by email or phone.
    assert not (contacts["email"].isna() & contacts["phone"].isna()).any()


def test_ground_truth_covers_every_record_once(sources: dict[str, pd.DataFrame]) -> None:
    pm = sources["person_map"]
    assert not pm.duplicated(["source", "record_id"]).any()
    for source, key in (
        ("contacts", "contact_id"),
        ("orders", "order_id"),
        ("events", "event_id"),
        ("leads", "lead_id"),
    ):
        ids = set(sources[source][key])
        assert set(pm.loc[pm["source"] == source, "record_id"]) == ids, source
    assert set(pm["person_id"]) <= set(sources["persons"]["person_id"])


def test_the_true_person_is_the_one_referenced(sources: dict[str, pd.DataFrame]) -> None:
    """A contact id or email in a row points at the contact whose ground-truth person is the row's person."""
    pm = sources["person_map"].set_index(["source", "record_id"])["person_id"]
    contacts = sources["contacts"].assign(
        person_id=lambda d: pm.loc["contacts"].reindex(d["contact_id"]).values
    )
    events = (
        sources["events"]
        .drop_duplicates()
        .assign(person_id=lambda d: pm.loc["events"].reindex(d["event_id"]).values)
    )
    by_contact = events[events["user_ref"].str.fullmatch(r"C\d{7}", na=False)]
    joined = by_contact.merge(contacts, left_on="user_ref", right_on="contact_id", suffixes=("", "_crm"))
    assert len(joined) == len(by_contact) > 0
    assert (joined["person_id"] == joined["person_id_crm"]).all()
    email_person = (
        contacts.dropna(subset=["email"])
        .assign(key=lambda d: d["email"].str.strip().str.lower())
        .drop_duplicates("key")
        .set_index("key")["person_id"]
    )
    orders = sources["orders"].drop_duplicates().dropna(subset=["customer_ref"])
    orders = orders[orders["customer_ref"].str.contains("@")]
    orders = orders.assign(
        key=orders["customer_ref"].str.strip().str.lower(),
        person_id=pm.loc["orders"].reindex(orders["order_id"]).values,
    )
    found = orders[orders["key"].isin(email_person.index)]
    assert len(found) > 0.9 * len(orders)
    assert (email_person.reindex(found["key"]).values == found["person_id"].values).all()


def test_clean_mode_has_no_errors(tmp_path: Path) -> None:
    generate(GeneratorConfig(customers=300, seed=2, mess_scale=0), out=tmp_path / "clean")
    orders = pd.read_csv(
        tmp_path / "clean" / "orders.csv.gz", dtype=str, keep_default_na=False, na_values=[""]
    )
    assert not orders.duplicated().any()
    assert (orders["amount"].astype(float) > 0).all()
    assert orders["customer_ref"].notna().all()
    assert (_ts(orders["order_ts"]) < END).all()


def test_refuses_to_overwrite_and_replaces_with_force(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    (out / "crm.sqlite").write_bytes(b"tags written back by serving")
    config = GeneratorConfig(customers=100, seed=1)
    with pytest.raises(PersonaError, match=r"already holds data \(e\.g\. crm\.sqlite\)") as err:
        generate(config, out=out)
    assert "--force" in str(err.value)
    assert (out / "crm.sqlite").read_bytes() == b"tags written back by serving"
    generate(config, out=out, force=True)
    assert (out / "orders.csv.gz").exists()
    assert (out / "crm.sqlite").read_bytes()[:15] == b"SQLite format 3"
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # no staging or old copies left behind


def test_a_failed_run_leaves_no_partial_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "raw"

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(writers.ParquetStream, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        generate(GeneratorConfig(customers=100, seed=1), out=out)
    assert list(tmp_path.iterdir()) == []


def test_config_rejects_bad_window() -> None:
    with pytest.raises(ValueError, match="must be after start"):
        GeneratorConfig(start=date(2025, 1, 1), end=date(2024, 1, 1))


def test_activity_spans_the_window(sources: dict[str, pd.DataFrame]) -> None:
    ts = _ts(sources["orders"]["order_ts"])
    in_window = ts[ts < END]
    months = in_window.dt.tz_convert("Asia/Shanghai").dt.strftime("%Y-%m").nunique()
    assert months == 24
    assert in_window.min() >= pd.Timestamp("2023-12-31T16:00:00Z")  # 2024-01-01 local time
    persons = sources["persons"]
    signup = persons["signup_at"].dropna()
    assert (signup < pd.Timestamp("2024-01-01", tz="UTC")).mean() > 0.2  # an existing customer base
    assert (signup > pd.Timestamp("2025-07-01", tz="UTC")).mean() > 0.05  # and new customers late on
    assert np.isfinite(persons["orders_per_30d"]).all()


def test_crm_and_leads_agree_with_the_ground_truth_dates(sources: dict[str, pd.DataFrame]) -> None:
    persons = sources["persons"].set_index("person_id")
    pm = sources["person_map"]
    contacts = sources["contacts"].merge(
        pm[pm["source"] == "contacts"], left_on="contact_id", right_on="record_id"
    )
    contacts["signup"] = _ts(contacts["signup_date"])
    customers = contacts[persons.loc[contacts["person_id"], "is_customer"].values].drop_duplicates(
        "person_id"
    )
    truth = persons.loc[customers["person_id"], "signup_at"].values
    timed = ~customers["signup_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").values
    assert (customers["signup"].values[timed] == truth[timed]).all()
    leads = (
        sources["leads"]
        .drop_duplicates("lead_id")
        .merge(pm[pm["source"] == "leads"], left_on="lead_id", right_on="record_id")
    )
    converted = leads[leads["converted"] == "1"]
    assert (
        _ts(converted["converted_at"]).values == persons.loc[converted["person_id"], "converted_at"].values
    ).all()

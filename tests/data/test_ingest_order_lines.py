"""An orders-only business: one Parquet export of order lines with its own column names and ready
customer numbers, no CRM, events or leads. Aggregation is checked against hand-computed orders."""

from __future__ import annotations

import pandas as pd
import pytest

from configs.settings import load_settings
from features.identity import customer_id_for
from features.ingest import aggregate_order_lines, load_clean, run_ingest, withdrawn_customer_ids
from features.schemas import Statuses
from persona.cli import main

# OrderNo, Customer, Date, Cat, Qty, Price, LineDiscount, LineStatus   (row numbers in comments)
LINES = [
    ("A1", "K1", "2024-05-01T10:00:00Z", "books", 2, 10.0, 1.0, None),  # 1: value 20, discount 1
    ("A1", "K1", "2024-05-01T18:00:00+08:00", "toys", 1, 30.0, 0.0, None),  # 2: value 30 -> category toys
    ("A1", "K1", "2024-05-03T00:00:00Z", "books", -1, 10.0, 0.0, None),  # 3: a returned unit
    ("A2", "K2", "2024-06-01", "garden", 1, 15.0, None, "Cancelled"),  # 4: the whole order cancelled
    ("A3", "K2", "2024-06-02", "garden", -2, 15.0, None, None),  # 5: return without a purchase line
    ("A4", "K1", "2024-06-03", "books", 1, -4.0, None, None),  # 6: negative unit price
    ("A4", "K1", "2024-06-03", "toys", 1, 5.0, None, None),  # 7: same order as a rejected line
    ("A5", "K1", "2024-06-04", "books", 0, 5.0, None, None),  # 8: zero quantity
    ("A6", "K3", "2024-06-05", "books", 3, 2.5, None, "completed"),  # 9
    ("A6", "K3", "2024-06-05", "books", 3, 2.5, None, "completed"),  # 10: exact duplicate of 9
]
COLUMNS = ["OrderNo", "Customer", "Date", "Cat", "Qty", "Price", "LineDiscount", "LineStatus"]


def lines_settings(data_dir):
    return load_settings(
        data_dir=str(data_dir),
        sources={
            "orders": {
                "path": "{data_dir}/export/lines.parquet",
                "layout": "order_lines",
                "customer_key": "customer_id",
                "columns": {
                    "order_id": "OrderNo",
                    "customer_ref": "Customer",
                    "order_ts": "Date",
                    "category": "Cat",
                    "quantity": "Qty",
                    "unit_price": "Price",
                    "discount": "LineDiscount",
                    "status": "LineStatus",
                },
            },
            "contacts": None,
            "events": None,
            "leads": None,
            "as_of": "2025-01-01T00:00:00Z",
        },
    )


@pytest.fixture
def lines_run(data_dir):
    (data_dir / "export").mkdir()
    pd.DataFrame(LINES, columns=COLUMNS).to_parquet(data_dir / "export" / "lines.parquet")
    settings = lines_settings(data_dir)
    return settings, run_ingest(settings)


def test_order_lines_aggregate_to_hand_computed_orders(lines_run) -> None:
    settings, _ = lines_run
    orders = load_clean(settings, "orders").set_index("order_id")
    assert sorted(orders.index) == ["A1", "A2", "A6"]
    a1 = orders.loc["A1"]
    # gross 2*10 + 1*30 = 50, discount 1 -> 49; 3 units bought; toys carries more value than books.
    assert (a1["amount"], a1["discount"], a1["quantity"], a1["category"]) == (49.0, 1.0, 3, "toys")
    assert a1["is_returned"] and not a1["is_cancelled"]
    assert a1["order_ts"] == pd.Timestamp("2024-05-01 10:00", tz="UTC")  # both first lines are 10:00 UTC
    a2 = orders.loc["A2"]
    assert (a2["amount"], a2["quantity"], a2["is_cancelled"], a2["is_returned"]) == (15.0, 1, True, False)
    a6 = orders.loc["A6"]
    assert (a6["amount"], a6["quantity"], a6["category"]) == (7.5, 3, "books")


def test_order_lines_quarantine_and_counts(lines_run) -> None:
    settings, result = lines_run
    q = load_clean(settings, "quarantine")
    assert set(zip(q["row"], q["column"], q["rule"], strict=True)) == {
        (5, "quantity", "return_without_purchase"),
        (6, "unit_price", "amount_negative"),
        (7, "order_id", "order_has_rejected_line"),
        (8, "quantity", "quantity_zero"),
    }
    rep = result.sources["orders"]
    assert (rep.read, rep.duplicates_removed, rep.quarantined, rep.kept) == (10, 1, 4, 5)
    assert rep.notes == ["5 order lines -> 3 orders"]


def test_ready_customer_ids_become_salted_person_ids(lines_run) -> None:
    settings, _ = lines_run
    customers = load_clean(settings, "customers")
    salt = settings.identity.salt.get_secret_value()
    assert sorted(customers["customer_id"]) == sorted(
        customer_id_for(["contact_id:K1", "contact_id:K2", "contact_id:K3"], salt=salt)
    )
    assert customers["is_customer"].all() and customers["consent_profiling"].all()
    assert customers["sources"].map(list).tolist() == [["orders"]] * 3
    assert customers["region"].isna().all() and customers["signup_ts"].isna().all()
    assert withdrawn_customer_ids(settings) == set()
    # the identity map keeps each order's customer number: the key write-back addresses records by
    idmap = load_clean(settings, "identity_map").set_index("source_record_id")
    assert idmap.loc[["A1", "A2", "A6"], "source_key"].tolist() == ["K1", "K2", "K3"]


def test_orders_only_run_says_which_sources_are_absent(lines_run, data_dir, tmp_path, capsys) -> None:
    settings, result = lines_run
    assert [n for n, r in result.sources.items() if r.status == "absent"] == ["contacts", "leads", "events"]
    assert load_clean(settings, "events") is None and load_clean(settings, "leads") is None
    assert not (data_dir / "clean" / "events.parquet").exists()
    config = tmp_path / "lines.yaml"
    config.write_text(
        f"data_dir: {data_dir}\n"
        "sources:\n  as_of: 2025-01-01T00:00:00Z\n  contacts: null\n  events: null\n  leads: null\n"
        "  orders:\n    path: '{data_dir}/export/lines.parquet'\n    layout: order_lines\n"
        "    customer_key: customer_id\n    columns: {order_id: OrderNo, customer_ref: Customer, order_ts: Date,"
        " category: Cat, quantity: Qty, unit_price: Price, discount: LineDiscount, status: LineStatus}\n"
    )
    assert main(["--config", str(config), "ingest"]) == 0
    out = capsys.readouterr().out
    for name in ("contacts", "events", "leads"):
        assert f"{name:<9} absent (not configured)" in out
    assert "orders" in out and "5 order lines -> 3 orders" in out
    assert "customers 3 (0 withdrew consent)" in out


def test_aggregate_order_lines_pure() -> None:
    lines = pd.DataFrame(
        {
            "order_id": ["X", "X", "Y"],
            "order_ts": pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-03"], utc=True),
            "quantity": [1.0, 2.0, 4.0],
            "unit_price": [7.0, 1.5, 1.0],
            "status": ["cancelled", "cancelled", "returned"],
        }
    )
    out = aggregate_order_lines(
        lines, statuses=Statuses(("completed",), ("returned",), ("cancelled",))
    ).set_index("order_id")
    assert out.loc["X", "gross"] == 10.0 and out.loc["X", "quantity"] == 3 and out.loc["X", "is_cancelled"]
    assert out.loc["X", "order_ts"] == pd.Timestamp("2024-01-01", tz="UTC")
    assert out.loc["Y", "is_returned"] and not out.loc["Y", "is_cancelled"] and out.loc["Y", "gross"] == 4.0
    assert out["category"].isna().all()

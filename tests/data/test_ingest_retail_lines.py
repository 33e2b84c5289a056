"""Order lines as a retailer exports them, in the style of the UCI Online Retail data: one row per product
line, a quarter of the lines without a customer number, cancellations as invoices starting with `C`
with negative quantities. Cancellations are linked to the purchases they undo and counted as returns;
only those of customers who bought nothing before are quarantined; products stay in the clean data."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from configs.settings import load_settings
from features.ingest import load_clean, run_ingest

COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]
LINES = [
    # row 1-2: customer 17850 buys two products
    ("536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6, "2010-12-01 08:26:00", 2.55, "17850", "United Kingdom"),
    ("536365", "71053", "WHITE METAL LANTERN", 6, "2010-12-01 08:26:00", 3.39, "17850", "United Kingdom"),
    # row 3: and a second order
    ("536366", "22633", "HAND WARMER UNION JACK", 6, "2010-12-01 08:28:00", 1.85, "17850", "United Kingdom"),
    # rows 4-5: a sale without a customer number (a quarter of the lines are like this)
    ("536367", "84879", "ASSORTED COLOUR BIRD ORNAMENT", 32, "2010-12-01 08:34:00", 1.69, "", "United Kingdom"),
    ("536367", "22745", "POPPY'S PLAYHOUSE BEDROOM", 6, "2010-12-01 08:34:00", 2.10, "", "United Kingdom"),
    # rows 6-7: customer 12583
    ("536370", "22728", "ALARM CLOCK BAKELIKE PINK", 24, "2010-12-01 08:45:00", 3.75, "12583", "France"),
    ("536370", "22727", "ALARM CLOCK BAKELIKE RED", 24, "2010-12-01 08:45:00", 3.75, "12583", "France"),
    # row 8: 17850 cancels one lantern: linked to 536365, the order holding that product
    ("C536379", "71053", "WHITE METAL LANTERN", -1, "2010-12-01 09:41:00", 3.39, "17850", "United Kingdom"),
    # row 9: 12583 cancels a product it never bought here: linked to its latest earlier order, 536370
    ("C536383", "35004C", "SET OF 3 COLOURED FLYING DUCKS", -1, "2010-12-01 09:49:00", 4.65, "12583", "France"),
    # row 10: 13047 cancels before buying anything: truly unmatched, quarantined
    ("C536391", "22553", "PLASTERS IN TIN SKULLS", -12, "2010-12-01 10:24:00", 1.65, "13047", "United Kingdom"),
    # rows 11-12: 13047's first purchase comes later
    ("536392", "22150", "3 STRIPEY MICE FELTCRAFT", 6, "2010-12-01 10:29:00", 1.45, "13047", "United Kingdom"),
    ("536392", "22553", "PLASTERS IN TIN SKULLS", 12, "2010-12-01 10:29:00", 1.65, "13047", "United Kingdom"),
    # rows 13-14: more lines without a customer number
    ("536393", "22180", "RETROSPOT LAMP", 8, "2010-12-01 10:37:00", 9.95, "", "United Kingdom"),
    ("C536394", "22180", "RETROSPOT LAMP", -1, "2010-12-01 10:39:00", 9.95, "", "United Kingdom"),
    # rows 15-16: 12583 again, later
    ("536395", "22728", "ALARM CLOCK BAKELIKE PINK", 12, "2010-12-01 11:00:00", 3.75, "12583", "France"),
    ("536395", "22726", "ALARM CLOCK BAKELIKE GREEN", 12, "2010-12-01 11:00:00", 3.75, "12583", "France"),
]


@pytest.fixture
def retail(data_dir):
    (data_dir / "export").mkdir()
    pd.DataFrame(LINES, columns=COLUMNS).to_csv(data_dir / "export" / "online_retail.csv", index=False)
    settings = load_settings(
        data_dir=str(data_dir),
        sources={
            "as_of": "2010-12-10T00:00:00Z",
            "contacts": None,
            "events": None,
            "leads": None,
            "orders": {
                "path": "{data_dir}/export/online_retail.csv",
                "layout": "order_lines",
                "customer_key": "customer_id",
                "return_prefixes": ["C"],
                "columns": {
                    "order_id": "InvoiceNo",
                    "product_id": "StockCode",
                    "description": "Description",
                    "quantity": "Quantity",
                    "order_ts": "InvoiceDate",
                    "unit_price": "UnitPrice",
                    "customer_ref": "CustomerID",
                },
            },
        },
    )
    return settings, run_ingest(settings)


def test_cancellations_are_linked_to_purchases_and_counted_as_returns(retail) -> None:
    settings, result = retail
    orders = load_clean(settings, "orders").set_index("order_id")
    assert sorted(orders.index) == ["536365", "536366", "536370", "536392", "536395"]
    returned = orders["is_returned"].to_dict()
    assert returned == {"536365": True, "536366": False, "536370": True, "536392": False, "536395": False}
    # the cancellation changes no sale's value: 6 * 2.55 + 6 * 3.39
    assert orders.loc["536365", "amount"] == pytest.approx(35.64)
    assert "2 returns/cancellations linked to 2 purchases (counted as returned)" in result.sources["orders"].notes


def test_only_truly_unmatched_rows_are_quarantined(retail) -> None:
    settings, result = retail
    q = load_clean(settings, "quarantine")
    rules = set(zip(q["row"], q["column"], q["rule"], strict=True))
    no_customer = {(r, "customer_ref", "required") for r in (4, 5, 13, 14)}
    assert rules == no_customer | {(10, "quantity", "return_without_purchase")}
    rep = result.sources["orders"]
    assert (rep.read, rep.quarantined, rep.kept) == (16, 5, 11)


def test_products_and_returns_stay_in_the_clean_order_lines(retail) -> None:
    settings, _ = retail
    lines = load_clean(settings, "order_lines")
    orders = load_clean(settings, "orders").set_index("order_id")
    assert len(lines) == 11
    lantern = lines[lines["order_id"] == "C536379"].iloc[0]
    assert (lantern["product_id"], lantern["description"], lantern["quantity"]) == ("71053", "WHITE METAL LANTERN", -1)
    assert lantern["is_return"] and lantern["returns_order_id"] == "536365"
    assert lantern["customer_id"] == orders.loc["536365", "customer_id"]
    ducks = lines[lines["order_id"] == "C536383"].iloc[0]
    assert ducks["returns_order_id"] == "536370" and ducks["customer_id"] == orders.loc["536370", "customer_id"]
    sales = lines[~lines["is_return"]]
    assert sales["returns_order_id"].isna().all()
    assert set(sales["product_id"]) == {"85123A", "71053", "22633", "22728", "22727", "22150", "22553", "22726"}
    assert not lines["customer_id"].isna().any()


def test_returns_reach_the_return_rate_feature(retail) -> None:
    from features.build import build_features

    settings, _ = retail
    build_features(settings, snapshots=[date(2010, 12, 2)])
    tx = pd.read_parquet(settings.data_dir / "features" / "customer_transactions.parquet")
    orders = load_clean(settings, "orders").set_index("order_id")
    rate = tx.set_index("customer_id")["return_rate_365d"]
    # 17850: one of two orders returned; 12583: one of two; 13047: none
    assert rate[orders.loc["536365", "customer_id"]] == pytest.approx(0.5)
    assert rate[orders.loc["536370", "customer_id"]] == pytest.approx(0.5)
    assert rate[orders.loc["536392", "customer_id"]] == 0.0

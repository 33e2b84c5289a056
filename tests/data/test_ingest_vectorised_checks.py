"""`features.schemas.failures` (what ingest quarantines) must give, row by row, the verdict of pandera's
own lazy validation of the same schema: on a generated world's sources, typed as ingest types them and
then made messier (nulls, negatives, fractions, infinities, huge values, unknown labels, future dates,
repeated ids), every (row, column, rule) one reports the other reports too."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest

from features.quarantine import Quarantine
from features.schemas import KINDS, Statuses, failures, schema_for, type_columns

AS_OF = pd.Timestamp("2025-06-01", tz="UTC")
# rule names pandera gives its own checks, and the column a frame-level check is about
PANDERA_RULES = {"not_nullable": "required", "field_uniqueness": "duplicate_id"}
FRAME_COLUMN = {"discount_exceeds_amount": "discount", "converted_without_timestamp": "converted_at"}


@pytest.fixture(scope="module")
def typed_sources(tmp_path_factory) -> dict[str, pd.DataFrame]:
    from configs.settings import load_settings
    from features.ingest import read_sources
    from features.synthetic.generate import generate

    data_dir = tmp_path_factory.mktemp("checks") / "data"
    settings = load_settings(data_dir=str(data_dir), sources={"as_of": "2026-01-01T00:00:00Z"})
    generate(settings.generator.model_copy(update={"customers": 300}), out=data_dir / "raw")
    out = {}
    for name, table in read_sources(settings, lazy=False).items():
        assert table is not None
        cfg = getattr(settings.sources, name)
        out[name] = type_columns(
            name, table.frame, timezone=cfg.timezone, quarantine=Quarantine(), source=name, location=name
        )
    # order lines: the orders' columns renamed as a line layout has them
    lines = out["orders"].rename(columns={"amount": "unit_price"}).drop(columns=["status"])
    out["order_lines"] = lines.assign(line_id=lines["order_id"], status=out["orders"]["status"])
    return out


def _messier(typed: pd.DataFrame, kind_key: str, seed: int) -> pd.DataFrame:
    """`typed` with about one value in eight of each column replaced by something a rule is about."""
    rng = np.random.default_rng(seed)
    out = typed.copy()
    n = len(out)
    for name in out.columns:
        hit = np.flatnonzero(rng.random(n) < 0.12)
        kind = KINDS[kind_key][name]
        column = out[name].copy()
        if kind == "num":
            column.iloc[hit] = rng.choice(
                [np.nan, -1.0, 0.0, 0.5, 2.5, np.inf, -np.inf, 1e12, -1e12], len(hit)
            )
        elif kind == "ts":
            future = AS_OF + pd.to_timedelta(rng.integers(1, 10**6, len(hit)), unit="s")
            column.iloc[hit] = np.where(rng.random(len(hit)) < 0.3, pd.NaT, future)
        elif kind == "flag":
            column.iloc[hit] = rng.choice(np.array([True, False, None], dtype=object), len(hit))
        elif kind == "label":
            column.iloc[hit] = rng.choice(
                np.array(["teleport", None, "completed", "visit"], dtype=object), len(hit)
            )
        else:  # ids, references and text: nulls and repeats of other rows' values (nulls repeat too)
            repeat = column.iloc[rng.integers(0, n, len(hit))].to_numpy()
            column.iloc[hit] = np.where(rng.random(len(hit)) < 0.3, None, repeat)
        out[name] = column
    return out


def _pandera_verdict(typed: pd.DataFrame, schema: pa.DataFrameSchema) -> set[tuple[int, str, str]]:
    """(row, column, rule) of pandera's lazy validation, named as the quarantine names them."""
    try:
        schema.validate(typed, lazy=True)
        return set()
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    cases = cases[cases["index"].notna()]
    frame_level = cases["schema_context"].eq("DataFrameSchema")
    column = cases["column"].where(~frame_level, cases["check"].map(FRAME_COLUMN)).fillna("")
    rule = cases["check"].map(lambda c: PANDERA_RULES.get(c, c))
    return set(zip(cases["index"].astype("int64"), column, rule, strict=True))


def _vectorised_verdict(typed: pd.DataFrame, schema: pa.DataFrameSchema) -> set[tuple[int, str, str]]:
    return {
        (int(row), column, rule)
        for column, rule, rows in failures(typed, schema, source="test")
        for row in rows
    }


@pytest.mark.parametrize("kind_key", ["orders", "order_lines", "contacts", "events", "leads"])
@pytest.mark.parametrize("seed", [1, 2])
def test_vectorised_checks_give_pandera_verdict_row_by_row(typed_sources, kind_key, seed) -> None:
    source = "orders" if kind_key == "order_lines" else kind_key
    typed = _messier(typed_sources[kind_key], kind_key, seed)
    schema = schema_for(
        kind_key,
        as_of=AS_OF,
        statuses=Statuses(("completed",), ("returned",), ("cancelled",)) if source == "orders" else None,
        max_amount=1e8,
        max_quantity=1e6,
    )
    expected = _pandera_verdict(typed, schema)
    got = _vectorised_verdict(typed, schema)
    assert got == expected, (sorted(got - expected)[:5], sorted(expected - got)[:5])
    # not vacuous: every column check and every frame check of the schema fails somewhere
    rules = {rule for _, _, rule in expected}
    declared = {str(c.error or c.name) for col in schema.columns.values() for c in col.checks}
    declared |= {str(c.error or c.name) for c in schema.checks}
    assert declared <= rules, declared - rules
    assert "required" in rules


def test_a_frame_level_check_names_its_column(typed_sources) -> None:
    typed = typed_sources["orders"].copy()
    typed.loc[typed.index[0], ["amount", "discount"]] = [10.0, 50.0]
    found = failures(typed, schema_for("orders", as_of=AS_OF), source="orders")
    rows = {rule: (column, set(r)) for column, rule, r in found}
    assert rows["discount_exceeds_amount"][0] == "discount"
    assert typed.index[0] in rows["discount_exceeds_amount"][1]

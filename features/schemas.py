"""Declared schemas of the raw sources (pandera) and the typing step in front of them.

Validation runs in two steps, both feeding the quarantine with (row, column, rule, value):
1. `type_columns` parses text into timestamps, numbers and flags. A value that does not parse is a
   row-level failure (`timestamp_unparseable`, `number_unparseable`, `unknown_flag_value`); a column in
   which *no* value parses is the wrong type altogether and stops the run (`SourceError`).
2. `schema_for(...)` is a pandera `DataFrameSchema` over the typed frame; `validate` evaluates it check by
   check (`failures`: pandera's verdict without its lazy error collection) and
   turns each failure case into a quarantine entry named after the check (the rule).

Rules: `required` (id, reference or timestamp missing), `timestamp_in_future` (after the run's `as_of`),
`amount_negative`, `discount_negative`, `discount_exceeds_amount`, `quantity_not_positive`,
`quantity_zero` (order lines), `quantity_not_integer`, `unknown_status`, `unknown_event_type`,
`number_not_finite` (inf), `amount_too_large` / `quantity_too_large` (above `sources.orders.max_amount`
/ `max_quantity`), `engagement_out_of_range` (0-100), `converted_without_timestamp`, `duplicate_id` (same id, different
content; the first row is kept). Identity resolution adds `invalid_customer_ref` and `no_contact_key`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from core.errors import SourceError
from features.normalize import clean_labels, parse_flags, parse_numbers, parse_timestamps
from features.quarantine import Quarantine
from features.vocabulary import EVENT_TYPES

# Persona column -> kind, per source (and orders layout). Kinds: id, ref, text, label, ts, num, flag.
KINDS: dict[str, dict[str, str]] = {
    "orders": {
        "order_id": "id",
        "customer_ref": "ref",
        "order_ts": "ts",
        "amount": "num",
        "discount": "num",
        "quantity": "num",
        "category": "text",
        "status": "label",
    },
    "order_lines": {
        "order_id": "id",
        "customer_ref": "ref",
        "order_ts": "ts",
        "quantity": "num",
        "unit_price": "num",
        "line_id": "id",
        "product_id": "text",
        "description": "text",
        "discount": "num",
        "category": "text",
        "status": "label",
    },
    "contacts": {
        "contact_id": "id",
        "phone": "ref",
        "email": "ref",
        "region": "text",
        "city": "text",
        "signup_date": "ts",
        "acquisition_channel": "text",
        "customer_type": "text",
        "consent_profiling": "flag",
        "last_updated": "ts",
    },
    "events": {
        "event_id": "id",
        "user_ref": "ref",
        "event_type": "label",
        "event_ts": "ts",
        "channel": "label",
    },
    "leads": {
        "lead_id": "id",
        "email": "ref",
        "phone": "ref",
        "source": "text",
        "campaign": "text",
        "created_at": "ts",
        "engagement_score": "num",
        "converted": "flag",
        "converted_at": "ts",
    },
}

_PARSE_RULE = {"ts": "timestamp_unparseable", "num": "number_unparseable", "flag": "unknown_flag_value"}


@dataclass(frozen=True)
class Statuses:
    """Order status vocabulary (trimmed, lower-case)."""

    completed: tuple[str, ...]
    returned: tuple[str, ...]
    cancelled: tuple[str, ...]

    @property
    def known(self) -> tuple[str, ...]:
        return self.completed + self.returned + self.cancelled


@dataclass
class ParseTally:
    """One typed column's values that were there and those that did not parse, over every chunk of a
    source, with the first failure (its 0-based row in the source and raw text)."""

    present: int = 0
    failed: int = 0
    first_row: int = -1
    first_value: str = ""


def type_columns(
    kind_key: str,
    raw: pd.DataFrame,
    *,
    timezone: str,
    quarantine: Quarantine,
    source: str,
    location: str,
    date_format: str | None = None,
    tallies: dict[str, ParseTally] | None = None,
) -> pd.DataFrame:
    """Typed copy of `raw`: ids/refs/text as trimmed strings, labels lower-cased, timestamps UTC,
    numbers float64, flags nullable boolean. Unparseable values are quarantined and become null.

    `raw` is indexed by the rows' 0-based positions in the source. A column in which no value parses
    raises SourceError; for a source typed chunk by chunk, pass one `tallies` dict to every chunk and
    call `check_parsed` once after the last."""
    kinds = KINDS[kind_key]
    whole = tallies is None
    tallies = {} if tallies is None else tallies
    typed: dict[str, pd.Series] = {}
    for name in raw.columns:
        kind = kinds[name]
        column = raw[name]
        if kind in ("id", "ref", "text"):
            text = column.astype("string[pyarrow]").str.strip()
            typed[name] = text.mask(text == "")
            continue
        if kind == "label":
            typed[name] = clean_labels(column)
            continue
        parser = {
            "ts": lambda s: parse_timestamps(s, timezone=timezone, date_format=date_format),
            "num": parse_numbers,
            "flag": parse_flags,
        }
        parsed = parser[kind](column)
        present = _present(column)
        failed = present & parsed.isna()
        tally = tallies.setdefault(name, ParseTally())
        tally.present += int(present.sum())
        n_failed = int(failed.sum())
        if n_failed:
            if tally.failed == 0:
                first = int(np.flatnonzero(failed.to_numpy())[0])
                tally.first_row, tally.first_value = int(raw.index[first]), str(column.iat[first])
            tally.failed += n_failed
            rule = "unknown_consent_value" if name == "consent_profiling" else _PARSE_RULE[kind]
            rows = failed[failed].index
            quarantine.add(source, rows, column=name, rule=rule, values=column.loc[rows])
        typed[name] = parsed
    if whole:
        check_parsed(tallies, kind_key=kind_key, source=source, location=location)
    return pd.DataFrame(typed, index=raw.index)


def check_parsed(tallies: dict[str, ParseTally], *, kind_key: str, source: str, location: str) -> None:
    """Raise SourceError for a column in which values were there but none parsed: the wrong column."""
    for name, tally in tallies.items():
        if tally.failed and tally.failed == tally.present:
            kind = KINDS[kind_key][name]
            what = {"ts": "timestamps", "num": "numbers", "flag": "yes/no values"}[kind]
            raise SourceError(
                f"source '{source}' ({location}): column '{name}' cannot be read as {what}: "
                f"no value parses (row {tally.first_row + 1}: {tally.first_value!r})",
                hint=f"check sources.{source}.columns.{name} points at the right column",
            )


def _present(column: pd.Series) -> pd.Series:
    """Non-null and, for text, not blank (arrow string ops, no Python-object round trip)."""
    if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_datetime64_any_dtype(column.dtype):
        return column.notna()
    text = column.astype("string[pyarrow]").str.strip()
    return (text.notna() & text.ne("")).fillna(False).astype(bool)


def _not_after(as_of: pd.Timestamp) -> pa.Check:
    return pa.Check(lambda s: s <= as_of, name="timestamp_in_future", ignore_na=True)


def _integral() -> pa.Check:
    return pa.Check(lambda s: (s % 1) == 0, name="quantity_not_integer", ignore_na=True)


def _bounded(limit: float, rule: str) -> list[pa.Check]:
    """Finite (inf is `number_not_finite`) and at most `limit` in absolute value (`rule`)."""
    return [
        pa.Check(lambda s: ~np.isinf(s.astype("float64")), element_wise=False, name="number_not_finite"),
        pa.Check(
            lambda s: (s.astype("float64").abs() <= limit) | np.isinf(s.astype("float64")),
            element_wise=False,
            name=rule,
        ),
    ]


def schema_for(
    kind_key: str,
    *,
    as_of: pd.Timestamp,
    statuses: Statuses | None = None,
    max_amount: float = 1e8,
    max_quantity: float = 1e6,
) -> pa.DataFrameSchema:
    """The pandera schema of a typed source frame (`kind_key`: a source name or `order_lines`)."""

    def col(
        *checks: pa.Check, nullable: bool = True, unique: bool = False, required: bool = False
    ) -> pa.Column:
        return pa.Column(
            checks=list(checks) or None,
            nullable=nullable,
            unique=unique,
            report_duplicates="exclude_first",
            required=required,
        )

    statuses = statuses or Statuses(("completed",), ("returned",), ("cancelled",))
    status_check = pa.Check.isin(list(statuses.known), error="unknown_status")
    future = _not_after(as_of)
    columns: dict[str, pa.Column]
    checks: list[pa.Check] = []
    if kind_key == "orders":
        columns = {
            "order_id": col(nullable=False, unique=True),
            "customer_ref": col(nullable=False, required=True),
            "order_ts": col(future, nullable=False, required=True),
            "amount": col(
                pa.Check.ge(0, error="amount_negative"),
                *_bounded(max_amount, "amount_too_large"),
                nullable=False,
                required=True,
            ),
            "discount": col(
                pa.Check.ge(0, error="discount_negative"), *_bounded(max_amount, "amount_too_large")
            ),
            "quantity": col(
                pa.Check.gt(0, error="quantity_not_positive"),
                _integral(),
                *_bounded(max_quantity, "quantity_too_large"),
                nullable=False,
            ),
            "status": col(status_check),
        }
        # The net amount must stay >= 0; a frame check since it spans two columns.
        checks.append(
            pa.Check(
                lambda df: (
                    (df["discount"].fillna(0) <= df["amount"].clip(lower=0)) | df["amount"].isna()
                    if "discount" in df
                    else pd.Series(True, index=df.index)
                ),
                name="discount_exceeds_amount",
            )
        )
    elif kind_key == "order_lines":
        columns = {
            "order_id": col(nullable=False, required=True),
            "customer_ref": col(nullable=False, required=True),
            "order_ts": col(future, nullable=False, required=True),
            "quantity": col(
                pa.Check.ne(0, error="quantity_zero"),
                _integral(),
                *_bounded(max_quantity, "quantity_too_large"),
                nullable=False,
                required=True,
            ),
            "unit_price": col(
                pa.Check.ge(0, error="amount_negative"),
                *_bounded(max_amount, "amount_too_large"),
                nullable=False,
                required=True,
            ),
            "discount": col(
                pa.Check.ge(0, error="discount_negative"), *_bounded(max_amount, "amount_too_large")
            ),
            "status": col(status_check),
        }
    elif kind_key == "contacts":
        columns = {
            "contact_id": col(nullable=False, unique=True, required=True),
            "signup_date": col(future),
            "last_updated": col(future),
        }
    elif kind_key == "events":
        columns = {
            "event_id": col(unique=True),
            "user_ref": col(nullable=False, required=True),
            "event_type": col(
                pa.Check.isin(list(EVENT_TYPES), error="unknown_event_type"), nullable=False, required=True
            ),
            "event_ts": col(future, nullable=False, required=True),
        }
    elif kind_key == "leads":
        columns = {
            "lead_id": col(nullable=False, unique=True, required=True),
            "created_at": col(future, nullable=False, required=True),
            "converted_at": col(future),
            "engagement_score": col(pa.Check.in_range(0, 100, error="engagement_out_of_range")),
        }
        checks.append(
            pa.Check(
                lambda df: (
                    ~(df["converted"].fillna(False).astype(bool) & df["converted_at"].isna())
                    if "converted" in df and "converted_at" in df
                    else pd.Series(True, index=df.index)
                ),
                name="converted_without_timestamp",
            )
        )
    else:
        raise ValueError(f"no schema for {kind_key!r}")
    return pa.DataFrameSchema(columns, checks=checks, strict=False, name=kind_key)


# Frame-level checks span columns: the quarantine names the column the rule is about.
_FRAME_CHECK_COLUMN = {"discount_exceeds_amount": "discount", "converted_without_timestamp": "converted_at"}


def failures(
    typed: pd.DataFrame, schema: pa.DataFrameSchema, *, source: str
) -> list[tuple[str, str, pd.Index]]:
    """`schema`'s verdict on `typed` as (column, rule, failing rows), one entry per column and check that
    fails: what pandera's lazy `schema.validate` reports, computed column by column without its
    error collection (which costs ten times the checks on a chunk of 200,000 rows).

    The same semantics: a non-nullable column fails on nulls (`required`); a unique one on every
    non-null repeat after the first (`duplicate_id`); each check runs on the column's non-null values
    (pandera's `ignore_na`) through the Check itself; a frame-level check names the column of
    `_FRAME_CHECK_COLUMN`. tests/data/test_ingest_vectorised_checks.py holds it to pandera row by row."""
    out: list[tuple[str, str, pd.Index]] = []

    def failed(check: pa.Check, values: pd.Series | pd.DataFrame) -> pd.Index:
        passed = check(values).check_output
        if isinstance(passed, bool | np.bool_):
            return typed.index[:0] if passed else typed.index
        return passed.index[~passed.to_numpy(dtype=bool)]

    for name, column in schema.columns.items():
        if name not in typed:
            if column.required:  # required columns are checked by the reader: this is a bug, not data
                raise SourceError(f"source '{source}': schema failure: required column '{name}' is missing")
            continue
        values = typed[name]
        if not column.nullable:
            out.append((name, "required", typed.index[values.isna().to_numpy(dtype=bool)]))
        if column.unique:
            repeat = (values.duplicated(keep="first") & values.notna()).to_numpy(dtype=bool)
            out.append((name, "duplicate_id", typed.index[repeat]))
        for check in column.checks:
            out.append((name, str(check.error or check.name), failed(check, values)))
    for check in schema.checks:
        rule = str(check.error or check.name)
        out.append((_FRAME_CHECK_COLUMN.get(rule, ""), rule, failed(check, typed)))
    return [(column, rule, rows) for column, rule, rows in out if len(rows)]


def validate(
    typed: pd.DataFrame, schema: pa.DataFrameSchema, *, raw: pd.DataFrame, quarantine: Quarantine, source: str
) -> None:
    """Check `typed` against `schema` (`failures`); every failing (row, check) goes to the quarantine
    with the raw value."""
    for name, rule, rows in failures(typed, schema, source=source):
        if rule == "required" and name in raw:
            # A value that was there but did not parse is already quarantined by the typing step.
            text = raw[name].loc[rows].astype("string").str.strip()
            rows = rows[(text.isna() | text.eq("")).fillna(True).to_numpy(dtype=bool)]
        values = raw[name].loc[rows] if name in raw else pd.Series([None] * len(rows), index=rows)
        quarantine.add(source, rows, column=name, rule=rule, values=values)

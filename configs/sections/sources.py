"""Where each raw source is read from and how its columns map onto Persona's names.

Column names Persona understands, per source (`columns:` maps these names to the source's own):

- orders, `layout: orders` (one row per order): required `customer_ref`, `order_ts`, `amount` (gross,
  >= 0); optional `order_id` (without it, an order is named by its data row in the source, `row-<n>`),
  `discount` (currency units, default 0), `quantity` (default 1), `category`, `status` (see the
  `*_statuses` lists; empty = completed).
- orders, `layout: order_lines` (one row per product line): required `order_id`, `customer_ref`,
  `order_ts`, `quantity` (negative = returned units), `unit_price` (>= 0); optional `line_id`,
  `product_id`, `description`, `discount` (of the line, currency units), `category`, `status` (a line
  whose status is in `cancelled_statuses` is cancelled, in `returned_statuses` returned). Lines are
  summed per `order_id`: amount = sum(quantity * unit_price) of the purchase lines (quantity > 0)
  minus their discounts, quantity = their units, category = the category with the largest value; the
  order is returned if any line is a return, cancelled if every purchase line is cancelled. An order
  made only of return lines (negative quantities, or an id starting with one of `return_prefixes`) is
  a return document: it is linked to the same customer's latest earlier purchase of the same product
  (else of anything), which then counts as returned; with no such purchase it is quarantined. Every
  kept line, products included, is in the clean `order_lines` table.
- `customer_ref` (orders) and `user_ref` (events): with `customer_key: contact` an email, a phone or a
  CRM contact id to resolve; with `customer_key: customer_id` a ready customer number of the business
  (joined to CRM contacts by `contact_id` when they share it).
- contacts: required `contact_id`; optional `phone`, `email`, `region`, `city`, `signup_date`,
  `acquisition_channel`, `customer_type`, `consent_profiling` (Y/N/yes/no/true/false/1/0; empty = never
  asked = allowed), `last_updated`. `full_name` is accepted in the mapping but never read.
- events: required `user_ref`, `event_type`, `event_ts`; optional `event_id`, `channel`.
- leads: required `lead_id`, `created_at`; optional `email`, `phone` (at least one of them),
  `source`, `campaign`, `engagement_score` (0-100), `converted` (0/1), `converted_at`.

Map a name to `null` to say the source has no such column.
"""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Persona column names per source (and orders layout): (required, optional).
ORDER_COLUMNS = (
    ("customer_ref", "order_ts", "amount"),
    ("order_id", "discount", "quantity", "category", "status"),
)
ORDER_LINE_COLUMNS = (
    ("order_id", "customer_ref", "order_ts", "quantity", "unit_price"),
    ("line_id", "product_id", "description", "discount", "category", "status"),
)
CONTACT_COLUMNS = (
    ("contact_id",),
    (
        "phone",
        "email",
        "region",
        "city",
        "signup_date",
        "acquisition_channel",
        "customer_type",
        "consent_profiling",
        "last_updated",
    ),
)
EVENT_COLUMNS = (("user_ref", "event_type", "event_ts"), ("event_id", "channel"))
LEAD_COLUMNS = (
    ("lead_id", "created_at"),
    ("email", "phone", "source", "campaign", "engagement_score", "converted", "converted_at"),
)
WHITESPACE = "whitespace"  # `csv_sep` value: columns separated by runs of blanks
# Persona's timestamp columns per source: the columns an incremental cursor may name.
TIMESTAMP_COLUMNS = {
    "orders": ("order_ts",),
    "contacts": ("last_updated", "signup_date"),
    "events": ("event_ts",),
    "leads": ("created_at", "converted_at"),
}
# Names accepted in a mapping but deliberately never read (raw PII that nothing downstream needs).
IGNORED_COLUMNS = {"contacts": ("full_name",)}


class IncrementalConfig(BaseModel):
    """How `persona refresh` reads only a source's new rows: `cursor` is the Persona name of a timestamp
    column that grows with new (or updated) rows; rows before the last run's `as_of` are not read again."""

    model_config = ConfigDict(extra="forbid")

    cursor: str


class SourceConfig(BaseModel):
    """One source. Give `path` (CSV/Parquet, plain or .gz) or `url` + `table` (SQLAlchemy)."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    url: str | None = None
    table: str | None = None
    format: Literal["auto", "csv", "parquet", "sql"] = "auto"
    # Persona's column name -> the column name in this source (null: the source has no such column).
    columns: dict[str, str | None] = Field(default_factory=dict)
    # orders only: one row per order, or one row per product line.
    layout: Literal["orders", "order_lines"] = "orders"
    # orders/events only: what identifies the person (a ready customer id, or an email/phone to resolve).
    customer_key: Literal["customer_id", "contact"] = "contact"
    # CSV delimiter: one character, or `whitespace` for text exports whose columns are separated by runs
    # of spaces or tabs (leading blanks ignored), e.g. `  00001 19970101  1   11.77`.
    csv_sep: str = ","
    # Time zone of timestamps written without an offset (IANA name).
    timezone: str = "UTC"
    # Timestamps that are not ISO 8601: their one strptime format, e.g. "%m/%d/%Y %H:%M" (US) or
    # "%d.%m.%Y" (German). Unset: ISO 8601 with or without an offset.
    date_format: str | None = None
    # orders only: status values (compared trimmed and lower-cased); anything else is quarantined.
    completed_statuses: list[str] = Field(
        default_factory=lambda: ["completed", "complete", "paid", "shipped", "delivered"]
    )
    returned_statuses: list[str] = Field(default_factory=lambda: ["returned", "return", "refunded"])
    cancelled_statuses: list[str] = Field(default_factory=lambda: ["cancelled", "canceled", "void"])
    # order_lines only: order ids that start with one of these are return documents (credit notes,
    # e.g. ["C"] for invoices such as C536379), like lines with a negative quantity.
    return_prefixes: list[str] = Field(default_factory=list)
    # orders only: an amount, unit price or discount above this (currency units), or a quantity above
    # `max_quantity`, is not a real order but a typo or a sentinel (1e308, 9999999999): quarantined as
    # `amount_too_large` / `quantity_too_large`, never summed into a feature. Infinite values are
    # quarantined as `number_not_finite` whatever the bounds.
    max_amount: float = Field(1e8, gt=0)
    max_quantity: float = Field(1e6, gt=0)
    # `persona refresh` reads only rows at or after the last run's `as_of` by this cursor (null: the
    # whole source is read, and only rows not seen before are ingested).
    incremental: IncrementalConfig | None = None

    @model_validator(mode="after")
    def _one_location(self) -> "SourceConfig":
        if self.path and self.url:
            raise ValueError("give either 'path' or 'url', not both")
        if self.url and not self.table:
            raise ValueError("'url' needs 'table'")
        return self

    @field_validator("csv_sep")
    @classmethod
    def _one_char_or_whitespace(cls, v: str) -> str:
        if v != WHITESPACE and len(v) != 1:
            raise ValueError(f"give one character or '{WHITESPACE}' (got {v!r})")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name such as 'UTC' or 'Asia/Shanghai')"
            ) from None
        return v

    @field_validator("date_format")
    @classmethod
    def _a_date_format(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not any(d in v for d in ("%d", "%j")) or not any(y in v for y in ("%Y", "%y")):
            raise ValueError(f"a strptime format with a day and a year, such as '%m/%d/%Y' (got {v!r})")
        return v

    @property
    def configured(self) -> bool:
        return bool(self.path or self.url)

    def mapped(self) -> dict[str, str]:
        """Persona name -> source column, without the names mapped to null."""
        return {k: v for k, v in self.columns.items() if v}


def known_columns(source: str, layout: str = "orders") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required, optional) Persona column names of a source (orders: of its layout)."""
    if source == "orders":
        return ORDER_LINE_COLUMNS if layout == "order_lines" else ORDER_COLUMNS
    return {"contacts": CONTACT_COLUMNS, "events": EVENT_COLUMNS, "leads": LEAD_COLUMNS}[source]


class SourcesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orders: SourceConfig
    contacts: SourceConfig = Field(default_factory=SourceConfig)
    events: SourceConfig = Field(default_factory=SourceConfig)
    leads: SourceConfig = Field(default_factory=SourceConfig)
    # The data's clock ("now" for labels, snapshots and staleness). Default: the latest activity in the
    # sources (orders, events, leads; a thin tail of stray future-dated rows aside). `--as-of` wins.
    as_of: datetime | None = None
    # Rows dated more than this after `as_of` are quarantined as `timestamp_in_future`.
    future_tolerance_hours: float = Field(24.0, ge=0)

    @field_validator("contacts", "events", "leads", mode="before")
    @classmethod
    def _null_is_absent(cls, v: Any) -> Any:
        # `contacts: null` in an override file switches an optional source off.
        return {} if v is None else v

    @model_validator(mode="after")
    def _orders_required(self) -> "SourcesConfig":
        if not self.orders.configured:
            raise ValueError("orders: a 'path' or 'url' is required (orders are the one required source)")
        return self

    @model_validator(mode="after")
    def _known_names(self) -> "SourcesConfig":
        for name in ("orders", "contacts", "events", "leads"):
            source: SourceConfig = getattr(self, name)
            allowed = set(IGNORED_COLUMNS.get(name, ()))
            # Keyword overrides of `load_settings` patch base.yaml's orders mapping, so orders accept both
            # layouts' names (the reader takes those of its layout).
            layouts = ("orders", "order_lines") if name == "orders" else ("orders",)
            for layout in layouts:
                required, optional = known_columns(name, layout)
                allowed |= set(required) | set(optional)
            if source.incremental is not None:
                cursor = source.incremental.cursor
                if cursor not in TIMESTAMP_COLUMNS[name]:
                    raise ValueError(
                        f"{name}.incremental.cursor: {cursor!r} is not a timestamp column of {name}; "
                        f"one of {list(TIMESTAMP_COLUMNS[name])}"
                    )
                if cursor in source.columns and source.columns[cursor] is None:
                    raise ValueError(
                        f"{name}.incremental.cursor: {cursor!r} is mapped to null in {name}.columns"
                    )
            unknown = sorted(set(source.columns) - allowed)
            if unknown:
                raise ValueError(
                    f"{name}.columns: unknown Persona column name(s) {unknown}; known: {sorted(allowed)}"
                )
        return self

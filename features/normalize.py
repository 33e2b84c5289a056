"""Normalisers for raw source values: emails, phones (E.164), timestamps, numbers, yes/no flags.

Pure and vectorised: each takes a Series and returns a Series aligned to it; a value that cannot be
normalised becomes null (callers decide whether that is a quarantine reason). Expensive parsers
(phonenumbers) run once per distinct value, so millions of rows with repeated references stay cheap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

TS_DTYPE = "datetime64[us, UTC]"
_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"
_PHONE_SEPARATORS = "[\\s\\-()./\u00a0]"
_OFFSET_SUFFIX = r"(?:[zZ]|[+-]\d{2}:?\d{2})$"
_ISO_SHAPE = (
    r"^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,9})?)?)?(?:[zZ]|[+-]\d{2}:?\d{2})?$"
)
_TRUE = {"y", "yes", "true", "t", "1"}
_FALSE = {"n", "no", "false", "f", "0"}


def _as_text(values: pd.Series) -> pd.Series:
    """Values as trimmed arrow-backed strings; empty strings become null."""
    text = values.astype("string[pyarrow]").str.strip()
    return text.mask(text == "")


def normalize_emails(values: pd.Series) -> pd.Series:
    """Trim and lower-case; anything that is not shaped like `local@domain.tld` becomes null.

    >>> normalize_emails(pd.Series([" Ann@Example.COM ", "no-at-sign", None])).tolist()
    ['ann@example.com', <NA>, <NA>]
    """
    text = _as_text(values).str.lower()
    valid = text.str.match(_EMAIL).fillna(False).astype(bool)
    return text.where(valid)


def _parse_phone(raw: str, region: str, country_code: str) -> str | None:
    def parse(text: str) -> phonenumbers.PhoneNumber | None:
        try:
            return phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            return None

    number = parse(raw)
    doubled = f"+{country_code}{country_code}"
    if (
        country_code
        and raw.startswith(doubled)
        and (number is None or not phonenumbers.is_valid_number(number))
    ):
        # The country code written without "+" or "00" (`8613800138000`) was read as a national number
        # and got the code again: without the repeat it is a valid number of the region.
        alternative = parse("+" + raw[len(doubled) - len(country_code) :])
        if alternative is not None and phonenumbers.is_valid_number(alternative):
            number = alternative
    if number is None or not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_phones(
    values: pd.Series, *, default_region: str, cache: dict[str, str | None] | None = None
) -> pd.Series:
    """Phone numbers in E.164 (`+8613800138000`); numbers without a country code are read as
    `default_region`'s; impossible numbers and text without digits become null.

    `+86 138-0013-8000`, `13800138000`, `0086 13800138000` and `8613800138000` (the country code
    without `+`; region CN) all give `+8613800138000`.
    """

    region = default_region.upper()
    text = _as_text(values).str.replace(_PHONE_SEPARATORS, "", regex=True)
    has_digit = text.str.contains(r"\d", regex=True).fillna(False).astype(bool)
    text = text.where(has_digit)
    # Collapse the common spellings of one number before the (slow, per value) parser sees them:
    # international prefix -> "+", national number without trunk prefix -> "+<country code>".
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    country_code = str(meta.country_code) if meta is not None else ""
    if meta is not None:
        idd = meta.international_prefix or ""
        if idd.isdigit():
            text = text.str.replace(rf"^{idd}(\d{{6,}})$", r"+\1", regex=True)
        trunk = meta.national_prefix or ""
        national = text.str.fullmatch(r"\d{6,}").fillna(False).astype(bool)
        if trunk:
            national &= ~text.str.startswith(trunk).fillna(False).astype(bool)
        text = text.mask(national, "+" + str(meta.country_code) + text)
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    cache = {} if cache is None else cache  # pass one dict to share parses between calls (same region)
    parsed = np.empty(len(uniques), dtype=object)
    for i, text_value in enumerate(uniques):
        key = str(text_value)
        if key not in cache:
            cache[key] = _parse_phone(key, region, country_code)
        parsed[i] = cache[key]
    out = np.full(len(text), None, dtype=object)
    seen = codes >= 0
    out[seen] = parsed[codes[seen]]
    return pd.Series(out, index=values.index, dtype="string[pyarrow]")


def _parse_with_pandas(text: pd.Series, timezone: str) -> pd.Series:
    """The slow, lenient path (any ISO-8601 variant pandas reads), for what the fast path refuses."""
    # Aware and naive text are parsed apart: pandas 2.3 (format="ISO8601") lets a naive value inherit
    # the offset of the aware value before it when both are mixed in one call.
    aware = text.str.contains(_OFFSET_SUFFIX, regex=True).fillna(False).astype(bool)
    parsed = pd.Series(pd.NaT, index=text.index, dtype=TS_DTYPE)
    if aware.any():
        parsed[aware] = pd.to_datetime(text[aware], format="ISO8601", utc=True, errors="coerce")
    naive = ~aware & text.notna()
    if naive.any():
        local = pd.to_datetime(text[naive], format="ISO8601", errors="coerce")
        parsed[naive] = local.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert(
            "UTC"
        )
    return parsed


def _parse_with_format(text: pd.Series, date_format: str, timezone: str) -> pd.Series:
    """Text in one declared strptime format (e.g. `%m/%d/%Y %H:%M`); with `%z` the offset is read,
    without it the text is wall-clock time in `timezone`. Anything else becomes NaT."""
    parsed = pd.to_datetime(text, format=date_format, errors="coerce", utc="%z" in date_format)
    if "%z" not in date_format:
        parsed = parsed.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    return parsed.astype(TS_DTYPE)


def parse_timestamps(
    values: pd.Series, *, timezone: str = "UTC", date_format: str | None = None
) -> pd.Series:
    """ISO-8601 text with mixed offsets (`+08:00`, `Z`, none) or dates -> `datetime64[us, UTC]`.

    Text without an offset is wall-clock time in `timezone`. Already-typed datetimes pass through
    (naive ones localised to `timezone`). Unparseable values become NaT. A source that writes dates
    another way (US `03/04/2024` is not European `03/04/2024`, and no guess can tell) declares
    `date_format`; then only that format is read.
    """

    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        typed = values if getattr(values.dt, "tz", None) is not None else values.dt.tz_localize(timezone)
        return typed.dt.tz_convert("UTC").astype(TS_DTYPE)
    text = _as_text(values)
    if date_format:
        return _parse_with_format(text, date_format, timezone)
    # Fast path: Arrow's C++ ISO-8601 cast (about 15x pandas' on mixed offsets) for well-shaped text.
    arr = (
        pa.chunked_array([pa.array(text.array, type=pa.string())])
        if len(text)
        else pa.chunked_array([], pa.string())
    )
    shaped = pc.fill_null(pc.match_substring_regex(arr, _ISO_SHAPE), False)
    aware = pc.and_(shaped, pc.fill_null(pc.match_substring_regex(arr, _OFFSET_SUFFIX), False))
    naive = pc.and_(shaped, pc.invert(aware))
    null_text = pa.nulls(len(arr), pa.string())
    try:
        utc = pc.cast(pc.if_else(aware, arr, null_text), pa.timestamp("us", tz="UTC"))
        local = pc.cast(pc.if_else(naive, arr, null_text), pa.timestamp("us"))
    except pa.ArrowInvalid:  # a well-shaped impossible date (Feb 30): let pandas sort the column out
        return _parse_with_pandas(text, timezone).astype(TS_DTYPE)
    parsed = pd.Series(utc.to_pandas().array, index=values.index).astype(TS_DTYPE)
    if pc.any(naive).as_py():
        local_ts = pd.Series(local.to_pandas().array, index=values.index)
        if timezone != "UTC":
            local_ts = local_ts.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
        else:
            local_ts = local_ts.dt.tz_localize("UTC")
        mask = naive.to_numpy(zero_copy_only=False)
        parsed[mask] = local_ts[mask].dt.tz_convert("UTC")
    rest = (text.notna() & ~pd.Series(shaped.to_numpy(zero_copy_only=False), index=values.index)).to_numpy()
    if rest.any():  # other ISO variants (e.g. 2024/01/03, week dates): the lenient path, few rows
        parsed[rest] = _parse_with_pandas(text[rest], timezone)
    return parsed.astype(TS_DTYPE)


def parse_numbers(values: pd.Series) -> pd.Series:
    """Numbers (text or numeric) -> float64; unparseable values become NaN."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64")
    return pd.to_numeric(_as_text(values), errors="coerce").astype("float64")


def parse_flags(values: pd.Series) -> pd.Series:
    """Yes/no text (Y/N, yes/no, true/false, 1/0, any case) -> nullable boolean; empty -> <NA>.

    Values that are neither are <NA> too: compare with `values.notna()` to find them.
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean")
    text = _as_text(values).str.lower()
    # Numeric sources may hold 1.0 / 0.0.
    text = text.str.replace(r"^([01])\.0+$", r"\1", regex=True)
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(_TRUE).fillna(False).astype(bool)] = True
    out[text.isin(_FALSE).fillna(False).astype(bool)] = False
    return out


def clean_labels(values: pd.Series) -> pd.Series:
    """Category-like text (status, event type, channel): trimmed, lower-case, empty -> null."""
    return _as_text(values).str.lower()


def looks_like_email(values: pd.Series) -> pd.Series:
    """True where the text contains an '@' (used to route a reference to the email normaliser)."""
    return _as_text(values).str.contains("@", regex=False).fillna(False).astype(bool)

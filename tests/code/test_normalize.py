"""Normalisers: hand-checked values for emails, phones, timestamps, numbers and flags."""

from __future__ import annotations

import pandas as pd
import pytest

from features.normalize import (
    normalize_emails,
    normalize_phones,
    parse_flags,
    parse_numbers,
    parse_timestamps,
)


def test_emails_trimmed_lower_cased_and_invalid_to_null() -> None:
    out = normalize_emails(
        pd.Series([" Ann@Example.COM ", "no-at-sign", "a@b", "two@@x.com", "", None, "x@y.cn"])
    )
    assert out.tolist() == ["ann@example.com", pd.NA, pd.NA, pd.NA, pd.NA, pd.NA, "x@y.cn"]


@pytest.mark.parametrize(
    "raw",
    [
        "+86 138-0013-8000",
        "13800138000",
        "0086 13800138000",
        "+86 (138) 0013 8000",
        "+8613800138000",
        " 138.0013.8000 ",
        "8613800138000",  # the 13-digit form: country code without + or 00
        "86 138 0013 8000",
        "86-138-0013-8000",
        "008613800138000",
    ],
)
def test_chinese_mobile_formats_give_one_e164(raw: str) -> None:
    assert normalize_phones(pd.Series([raw]), default_region="CN").tolist() == ["+8613800138000"]


def test_phones_other_region_and_garbage() -> None:
    out = normalize_phones(
        pd.Series(["+1 650-253-0000", "(650) 253-0000", "12", "call me", None, ""]), default_region="US"
    )
    assert out.tolist() == ["+16502530000", "+16502530000", pd.NA, pd.NA, pd.NA, pd.NA]
    # Same digits, other default region: read as a Chinese number, not an American one.
    assert normalize_phones(pd.Series(["13800138000"]), default_region="cn").tolist() == ["+8613800138000"]
    # a landline written with the country code and no +: valid only without the code repeated
    assert normalize_phones(pd.Series(["8601012345678"]), default_region="CN").tolist() == ["+861012345678"]


def test_phones_keep_alignment_with_repeats() -> None:
    raw = pd.Series(
        ["13800138000", "bad", "+86 138 0013 8000", None, "13800138000"], index=[10, 11, 12, 13, 14]
    )
    out = normalize_phones(raw, default_region="CN")
    assert out.index.tolist() == [10, 11, 12, 13, 14]
    assert out.tolist() == ["+8613800138000", pd.NA, "+8613800138000", pd.NA, "+8613800138000"]


def test_timestamps_mixed_offsets_naive_dates_to_utc_microseconds() -> None:
    raw = pd.Series(
        [
            "2024-03-01T08:00:00+08:00",  # 00:00 UTC
            "2024-03-05 10:00:00",  # naive = UTC wall clock
            "2024-02-01T12:00:00Z",
            "2024-04-01",  # date only
            "2024-03-05T10:00:00-01:30",  # 11:30 UTC
            "2024-13-45",
            None,
        ]
    )
    out = parse_timestamps(raw)
    assert str(out.dtype) == "datetime64[us, UTC]"
    expected = [
        "2024-03-01 00:00",
        "2024-03-05 10:00",
        "2024-02-01 12:00",
        "2024-04-01 00:00",
        "2024-03-05 11:30",
    ]
    assert out[:5].tolist() == [pd.Timestamp(t, tz="UTC") for t in expected]
    assert out[5:].isna().all()


def test_naive_timestamps_in_a_source_time_zone() -> None:
    out = parse_timestamps(
        pd.Series(["2024-03-05 10:00:00", "2024-03-05T10:00:00Z"]), timezone="Asia/Shanghai"
    )
    assert out.tolist() == [
        pd.Timestamp("2024-03-05 02:00", tz="UTC"),
        pd.Timestamp("2024-03-05 10:00", tz="UTC"),
    ]


def test_typed_datetimes_pass_through() -> None:
    naive = pd.Series(pd.to_datetime(["2024-01-01 08:00"]))
    assert parse_timestamps(naive, timezone="Asia/Shanghai").tolist() == [
        pd.Timestamp("2024-01-01 00:00", tz="UTC")
    ]


def test_numbers_and_flags() -> None:
    assert parse_numbers(pd.Series(["1.5", " 2 ", "x", None, "-3"])).tolist()[:2] == [1.5, 2.0]
    assert parse_numbers(pd.Series(["x"])).isna().all()
    assert parse_numbers(pd.Series([1, 2])).dtype == "float64"
    flags = parse_flags(pd.Series(["Y", "n", "1.0", "0", "TRUE", None, "maybe", ""]))
    assert flags.tolist()[:5] == [True, False, True, False, True]
    assert flags[5:].isna().all()


def test_timestamps_keep_a_sparse_index_and_fall_back_for_odd_text() -> None:
    raw = pd.Series(
        ["2024-03-01T08:00:00+08:00", "2024-03-05 10:00:00", "2024/01/03", "2024-02-30"], index=[3, 7, 8, 20]
    )
    out = parse_timestamps(raw)
    assert out.index.tolist() == [3, 7, 8, 20]
    assert out[[3, 7, 8]].tolist() == [
        pd.Timestamp("2024-03-01", tz="UTC"),
        pd.Timestamp("2024-03-05 10:00", tz="UTC"),
        pd.Timestamp("2024-01-03", tz="UTC"),
    ]
    assert pd.isna(out[20])  # 30 February does not exist

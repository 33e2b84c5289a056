"""Generator building blocks on tiny, hand-checked inputs: strings, phones, emails, timestamps, duplicates."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pytest

from features.synthetic import clock, mess, text
from features.synthetic.clock import TsMix, Window


def _epoch(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def test_digits_and_ids_are_zero_padded() -> None:
    assert text.sequential_ids("O", 3, 8).to_pylist() == ["O00000001", "O00000002", "O00000003"]
    piece = text.digits(np.array([0, 7, 12345]), 5)
    assert text.join([piece]).to_pylist() == ["00000", "00007", "12345"]
    with pytest.raises(ValueError, match="do not fit in 2 digits"):
        text.digits(np.array([100]), 2)


def test_join_respects_lengths_and_nulls() -> None:
    codes = np.array([0, 1, 2])
    out = text.join(
        [text.choice(["a", "bb", ""], codes), text.constant("-", 3), text.digits(np.array([1, 2, 3]), 1)],
        valid=np.array([True, True, False]),
    )
    assert out.to_pylist() == ["a-1", "bb-2", None]
    assert out.null_count == 1


def test_from_arrow_round_trips_and_upper() -> None:
    source = pa.array(["ab.cd@x.com", "", None, "z"])
    piece = text.from_arrow(source)
    assert text.join([piece]).to_pylist() == ["ab.cd@x.com", "", "", "z"]
    upper = text.upper(piece, np.array([True, False, False, False]))
    assert text.join([upper]).to_pylist()[0] == "AB.CD@X.COM"


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        (0, "13800138000"),
        (1, "+86 138-0013-8000"),
        (2, "0086 13800138000"),
        (3, "+8613800138000"),
        (4, "138 0013 8000"),
    ],
)
def test_phone_styles(style: int, expected: str) -> None:
    p = [0.0] * mess.PHONE_STYLES
    p[style] = 1.0
    rendered = mess.phones(np.random.default_rng(0), np.array([13800138000]), style_p=tuple(p))
    assert rendered.to_pylist() == [expected]


def test_phone_null_where_invalid() -> None:
    rendered = mess.phones(
        np.random.default_rng(0),
        np.array([13800138000, 15912345678]),
        style_p=(1, 0, 0, 0, 0),
        valid=np.array([False, True]),
    )
    assert rendered.to_pylist() == [None, "15912345678"]


def test_email_noise_only_changes_case_and_spaces() -> None:
    rates = mess.MessRates(email_case=0.5, email_space=0.5)
    source = pa.array(["kalo.tavex.12@example.com"] * 400)
    out = mess.emails(np.random.default_rng(1), source, rates=rates).to_pylist()
    assert {o.strip().lower() for o in out} == {"kalo.tavex.12@example.com"}
    assert any(o != o.strip() for o in out)
    assert any(o.strip() != o.strip().lower() for o in out)
    assert "KALO.TAVEX.12@EXAMPLE.COM" in out
    clean = mess.emails(np.random.default_rng(1), source, rates=mess.MessRates().scaled(0)).to_pylist()
    assert clean == source.to_pylist()


def test_render_timestamp_styles() -> None:
    seconds = np.array([_epoch(2024, 3, 5, 10, 20, 30)])

    def one(mix: TsMix) -> str:
        return clock.render(np.random.default_rng(0), seconds, mix=mix).to_pylist()[0]

    assert one(TsMix(1, 0, 0)) == "2024-03-05T18:20:30+08:00"
    assert one(TsMix(0, 1, 0)) == "2024-03-05T10:20:30Z"
    assert one(TsMix(0, 0, 1)) == "2024-03-05 10:20:30"  # naive = UTC wall clock
    assert one(TsMix(0, 0, 0, 1)) == "2024-03-05"
    # Local date rolls over before UTC does.
    late = clock.render(
        np.random.default_rng(0), np.array([_epoch(2024, 12, 31, 20, 0, 0)]), mix=TsMix(1, 0, 0)
    )
    assert late.to_pylist() == ["2025-01-01T04:00:00+08:00"]


def test_window_conversions() -> None:
    w = Window(date(2024, 1, 1), date(2024, 1, 10))
    assert w.days == 10
    assert w.start_epoch == _epoch(2024, 1, 1)
    assert w.to_epoch(np.array([1.5])).tolist() == [_epoch(2024, 1, 2, 12)]
    s = w.at_local_hour(np.random.default_rng(0), np.full(1000, 3.2))
    local_day = (s + clock.LOCAL_OFFSET_SECONDS) // 86_400
    assert set(local_day.tolist()) == {(_epoch(2024, 1, 4) // 86_400)}


def test_window_clamp() -> None:
    w = Window(date(2024, 1, 1), date(2024, 1, 10))
    s = np.array([w.start_epoch - 5, w.start_epoch + 100_000, w.start_epoch + 900_000])
    clamped = w.clamp(s, lo_days=np.array([0.5, 0.5, np.nan]), hi_days=np.array([np.inf, 1.0, 2.0]))
    assert clamped.tolist() == [w.start_epoch + 43_200, w.start_epoch + 86_399, w.start_epoch + 172_799]


def test_poisson_times_stay_in_their_window_and_match_the_rate() -> None:
    rng = np.random.default_rng(3)
    owner, t = clock.poisson_times(
        rng,
        rate=np.array([2.0, 0.0, 1.0, 5.0]),
        begin=np.array([0.0, 0.0, 10.0, np.nan]),
        end=np.array([1000.0, 50.0, 5.0, 9.0]),
    )
    assert set(owner.tolist()) == {0}  # zero rate, empty window and nan begin give nothing
    assert t.min() >= 0 and t.max() < 1000
    assert abs(owner.size - 2000) < 4 * np.sqrt(2000)


def test_ramp() -> None:
    r = clock.ramp(np.array([0.0, 50.0, 75.0, 100.0, 120.0]), np.array([100.0] * 5), width=50.0)
    assert r.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert clock.ramp(np.array([5.0]), np.array([np.inf]), width=50.0).tolist() == [0.0]


def test_resend_duplicates_keeps_every_row_and_repeats_a_few_later() -> None:
    rows = mess.resend_duplicates(np.random.default_rng(0), 10_000, rate=0.01, max_delay_rows=50)
    counts = np.bincount(rows, minlength=10_000)
    assert counts.min() == 1 and counts.max() == 2
    assert 50 < (counts == 2).sum() < 160
    first = {}
    for pos, r in enumerate(rows):
        if r in first:
            assert 0 < pos - first[r] <= 52  # re-sent after the original, not before
        else:
            first[r] = pos
    assert np.array_equal(np.unique(rows), np.arange(10_000))


def test_by_kind_puts_rows_back_in_place() -> None:
    kind = np.array([1, 0, 1, 2, 0])
    out = mess.by_kind(
        kind,
        {
            0: lambda rows: pa.array([f"a{r}" for r in rows]),
            1: lambda rows: pa.array([f"b{r}" for r in rows]),
            2: lambda rows: pa.array([f"c{r}" for r in rows]),
        },
    )
    assert out.to_pylist() == ["b0", "a1", "b2", "c3", "a4"]


def test_mess_scaled() -> None:
    base = mess.MessRates()
    assert mess.MessRates().scaled(0).duplicate_orders == 0
    assert base.scaled(2).negative_amount == pytest.approx(2 * base.negative_amount)
    assert base.scaled(1000).missing_lead_phone == 0.5

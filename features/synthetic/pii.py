"""Fake, obviously synthetic identities: one name, email and CN mobile number per person, unique by
construction (the person number is part of the email; phone suffixes are a bijection of the number)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from features.synthetic import text, vocab

_PHONE_MULTIPLIER = 48_271  # odd and not a multiple of 5: a bijection on [0, 10**8)


@dataclass(frozen=True)
class Identities:
    """Per person: display name, primary email, secondary email (used by some duplicate contacts), phone."""

    full_name: pa.Array
    email: pa.Array
    alt_email: pa.Array
    phone: np.ndarray  # int64, 11 digits
    # the random offset of the phone bijection: shared by every chunk of one population
    phone_offset: int = 0


def _lower(piece: text.Piece) -> text.Piece:
    matrix = piece.matrix.copy()
    big = (matrix >= ord("A")) & (matrix <= ord("Z"))
    matrix[big] += 32
    return text.Piece(matrix, piece.lengths)


def make_identities(
    rng: np.random.Generator, n: int, *, first: int = 0, phone_offset: int | None = None
) -> Identities:
    """Names like "Kalo Tavex", emails like "kalo.tavex.12@example.com", phones like 13800138000.

    `first` is the number of the first person (a chunk of a larger population); a chunk after the
    first passes the first chunk's `phone_offset`, so numbers and phones stay unique population-wide.
    """
    if first + n >= 10**8:
        raise ValueError("at most 99,999,999 persons")
    s = len(vocab.GIVEN_SYLLABLES)
    g1, g2 = rng.integers(0, s, n), rng.integers(0, s, n)
    stem = rng.integers(0, len(vocab.FAMILY_STEMS), n)
    end = rng.integers(0, len(vocab.FAMILY_ENDS), n)
    domain = rng.integers(0, len(vocab.EMAIL_DOMAINS), n)
    alt_domain = (domain + 1 + rng.integers(0, len(vocab.EMAIL_DOMAINS) - 1, n)) % len(vocab.EMAIL_DOMAINS)
    number = np.arange(first, first + n, dtype=np.int64)

    given_first = text.choice([x.capitalize() for x in vocab.GIVEN_SYLLABLES], g1)
    given_rest = text.choice(list(vocab.GIVEN_SYLLABLES), g2)
    family_stem = text.choice(list(vocab.FAMILY_STEMS), stem)
    family_end = text.choice(list(vocab.FAMILY_ENDS), end)
    space, dot, at = text.constant(" ", n), text.constant(".", n), text.constant("@", n)
    full_name = text.join([given_first, given_rest, space, family_stem, family_end])

    # The number without padding: digits() pads, so cut each row to its own length.
    width = len(str(max(first + n - 1, 0)))
    padded = text.digits(number, width)
    own_len = np.maximum(1, np.floor(np.log10(np.maximum(number, 1))).astype(np.int64) + 1)
    own = text.Piece(
        np.take_along_axis(
            padded.matrix, (np.arange(width)[None, :] + (width - own_len)[:, None]) % width, axis=1
        ),
        own_len,
    )
    email = text.join(
        [
            _lower(given_first),
            given_rest,
            dot,
            _lower(family_stem),
            family_end,
            dot,
            own,
            at,
            text.choice(list(vocab.EMAIL_DOMAINS), domain),
        ]
    )
    alt_email = text.join(
        [
            _lower(family_stem),
            family_end,
            text.constant("_", n),
            _lower(given_first),
            given_rest,
            own,
            at,
            text.choice(list(vocab.EMAIL_DOMAINS), alt_domain),
        ]
    )
    prefix = np.asarray(vocab.PHONE_PREFIXES, dtype=np.int64)[rng.integers(0, len(vocab.PHONE_PREFIXES), n)]
    drawn = int(rng.integers(0, 10**8))  # drawn always, so the other draws do not depend on the chunk
    offset = drawn if phone_offset is None else phone_offset
    suffix = (number * _PHONE_MULTIPLIER + offset) % 10**8
    return Identities(
        full_name=full_name,
        email=email,
        alt_email=alt_email,
        phone=prefix * 10**8 + suffix,
        phone_offset=offset,
    )

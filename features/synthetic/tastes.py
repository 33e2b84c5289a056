"""Per-person category preferences (the ground truth a recommender should recover).

Categories come in tastes: someone whose favourite is electronics also tends to buy books and sports
goods, a beauty buyer apparel and home. Each person's preference is a Dirichlet draw around "favourite
+ its two companions + a little of everything (by popularity)", so people who share a favourite look
alike (what a collaborative model learns) while each keeps their own mix.
"""

from __future__ import annotations

import numpy as np

from features.synthetic import vocab

# Companions of each category (same order as vocab.CATEGORIES).
COMPANIONS: dict[str, tuple[str, str]] = {
    "electronics": ("books", "sports"),
    "apparel": ("beauty", "sports"),
    "home": ("grocery", "toys"),
    "beauty": ("apparel", "home"),
    "grocery": ("home", "toys"),
    "sports": ("electronics", "apparel"),
    "books": ("electronics", "toys"),
    "toys": ("books", "grocery"),
}
FAVOURITE_SHARE = 0.45
COMPANION_SHARE = 0.15  # each of the two
CONCENTRATION = 25.0  # Dirichlet concentration: higher = persons closer to their taste's mean


def taste_means(favourite: np.ndarray) -> np.ndarray:
    """Mean preference (rows sum to 1) of persons with each favourite category (index into CATEGORIES)."""
    cats = vocab.CATEGORIES
    popularity = np.asarray(vocab.CATEGORY_WEIGHTS, dtype=np.float64)
    rest = 1.0 - FAVOURITE_SHARE - 2 * COMPANION_SHARE
    table = np.tile(rest * popularity / popularity.sum(), (len(cats), 1))
    for i, name in enumerate(cats):
        table[i, i] += FAVOURITE_SHARE
        for companion in COMPANIONS[name]:
            table[i, cats.index(companion)] += COMPANION_SHARE
    return table[favourite]


def draw_preferences(rng: np.random.Generator, favourite: np.ndarray) -> np.ndarray:
    """One preference vector per person (n x len(CATEGORIES), rows sum to 1)."""
    alpha = CONCENTRATION * taste_means(favourite)
    gamma = rng.gamma(alpha)
    return gamma / gamma.sum(axis=1, keepdims=True)


def sample_categories(preferences: np.ndarray, owner: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Category of each order: inverse CDF of its owner's preference at a uniform draw."""
    cdf = np.cumsum(preferences[owner], axis=1)
    cdf[:, -1] = 1.0  # rounding must never push a draw past the last category
    return (uniform[:, None] > cdf).sum(axis=1)

"""Fixed vocabularies of the synthetic company. Names are built from invented syllables and emails use
the reserved example.* domains, so no generated value can be a real person's PII."""

from __future__ import annotations

from features.vocabulary import EVENT_TYPES  # noqa: F401  (the contract's; the generator emits them)

GIVEN_SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ru",
    "ta",
    "ve",
    "zo",
    "xi",
    "pe",
    "du",
    "no",
    "sa",
    "fi",
    "ge",
    "bu",
    "ly",
)
FAMILY_STEMS = (
    "Kan",
    "Lor",
    "Mib",
    "Rut",
    "Tav",
    "Vex",
    "Zol",
    "Xim",
    "Pel",
    "Dun",
    "Nox",
    "Saf",
    "Fip",
    "Gub",
)
FAMILY_ENDS = ("or", "ix", "ex", "an", "ov", "ul", "ar", "en")
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")

# CN mobile prefixes in the 13x / 15x / 18x ranges.
PHONE_PREFIXES = (
    130,
    131,
    132,
    133,
    134,
    135,
    136,
    137,
    138,
    139,
    150,
    151,
    152,
    153,
    155,
    156,
    157,
    158,
    159,
    180,
    181,
    182,
    183,
    184,
    185,
    186,
    187,
    188,
    189,
)

REGIONS = ("East", "North", "South", "Central", "Southwest", "Northeast", "Northwest")
CITIES = (
    ("Shanghai", "Hangzhou", "Nanjing", "Suzhou"),
    ("Beijing", "Tianjin", "Shijiazhuang"),
    ("Guangzhou", "Shenzhen", "Xiamen"),
    ("Wuhan", "Changsha", "Zhengzhou"),
    ("Chengdu", "Chongqing", "Kunming"),
    ("Shenyang", "Harbin", "Dalian"),
    ("Xian", "Lanzhou"),
)
REGION_WEIGHTS = (0.30, 0.18, 0.20, 0.12, 0.10, 0.06, 0.04)

ACQUISITION_CHANNELS = (
    "organic_search",
    "paid_search",
    "social",
    "referral",
    "email",
    "offline_store",
    "marketplace",
)
ACQUISITION_WEIGHTS = (0.22, 0.18, 0.17, 0.10, 0.08, 0.13, 0.12)
CUSTOMER_TYPES = ("individual", "business")

CATEGORIES = ("electronics", "apparel", "home", "beauty", "grocery", "sports", "books", "toys")
CATEGORY_WEIGHTS = (0.14, 0.20, 0.14, 0.13, 0.16, 0.09, 0.07, 0.07)
ORDER_STATUSES = ("completed", "returned", "cancelled")

CHANNELS = ("web", "app", "email", "support")

LEAD_SOURCES = ("web_form", "search_ads", "social_ads", "referral", "trade_show", "partner")
LEAD_SOURCE_WEIGHTS = (0.32, 0.22, 0.20, 0.10, 0.08, 0.08)
# Where a converted lead's CRM contact says the customer came from (by lead source).
LEAD_SOURCE_TO_CHANNEL = (
    "organic_search",
    "paid_search",
    "social",
    "referral",
    "offline_store",
    "marketplace",
)
# Small effect of the source on conversion (referrals convert best), on the logit scale.
LEAD_SOURCE_EFFECT = (0.0, -0.1, -0.25, 0.45, 0.2, 0.1)
CAMPAIGN_THEMES = (
    "new_year",
    "spring_sale",
    "mid_year_618",
    "summer_launch",
    "autumn_promo",
    "singles_day",
    "loyalty_push",
    "year_end",
)
# Themes a campaign of each quarter (1-4) picks from, as indices into CAMPAIGN_THEMES.
QUARTER_THEMES = ((0, 1, 6), (1, 2, 6), (3, 4, 6), (5, 7, 6))

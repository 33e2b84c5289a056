"""Values the contract fixes (docs/CONTRACTS.md): kept apart from the pandera schemas so that light
modules (the generator) can import them without pandera."""

# Behaviour event types a source may send; anything else is quarantined as `unknown_event_type`.
EVENT_TYPES = (
    "visit",
    "page_view",
    "product_view",
    "email_open",
    "email_click",
    "support_ticket",
    "complaint",
)

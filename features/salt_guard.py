"""The public demo salt may pseudonymise the demo world only.

The default `identity.salt` is published in this repository: ids hashed with it can be reversed by anyone
who has a list of emails or phones. So `persona ingest` refuses it unless every configured source is the
synthetic demo world (a folder written by `persona data generate`, recognised by its
`ground_truth/person_map.parquet`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from configs.sections.identity import DEMO_SALT
from core.errors import ConfigError

if TYPE_CHECKING:
    from configs.settings import Settings

SOURCES = ("orders", "contacts", "events", "leads")
GENERATOR_MARK = Path("ground_truth") / "person_map.parquet"


def _source_file(settings: Settings, name: str) -> Path | None:
    """The file a source is read from (a SQLite URL's database file); None for a server database."""
    cfg = getattr(settings.sources, name)
    if cfg.path:
        return settings.path(cfg.path)
    if cfg.url:
        url = sa.make_url(settings.url(cfg.url))
        if url.get_backend_name() == "sqlite" and url.database:
            return Path(url.database)
    return None


def is_demo_world(settings: Settings) -> bool:
    """True when every configured source lies in a folder `persona data generate` wrote."""
    for name in SOURCES:
        if not getattr(settings.sources, name).configured:
            continue
        path = _source_file(settings, name)
        if path is not None and not path.exists():
            continue  # the reader reports a missing source, by name
        if path is None or not (path.resolve().parent / GENERATOR_MARK).is_file():
            return False
    return True


def require_private_salt(settings: Settings) -> None:
    """Stop with a one-line error when real data would be hashed with the public demo salt."""
    if settings.identity.salt.get_secret_value() == DEMO_SALT and not is_demo_world(settings):
        raise ConfigError(
            "identity.salt is the public demo salt and these sources are not the demo world: "
            "set PERSONA_IDENTITY__SALT to a secret of at least 8 characters"
        )

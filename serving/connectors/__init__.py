"""CRM connectors for the outbox dispatcher: `make_connector(settings)` picks one by `crm.connector`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from core.errors import ConfigError, CrmError
from serving.connectors.base import (
    BatchRejected,
    Connector,
    RateLimited,
    SendResult,
    TransientCrmError,
)
from serving.connectors.http import HttpConnector
from serving.connectors.sql import SqlConnector
from serving.record_keys import RecordKeys

if TYPE_CHECKING:
    from configs.settings import Settings

__all__ = [
    "BatchRejected",
    "Connector",
    "RateLimited",
    "SendResult",
    "TransientCrmError",
    "make_connector",
]


def make_connector(settings: Settings) -> Connector:
    """The connector `settings.crm` asks for: `sql` (a SQLAlchemy URL) or `http` (HubSpot CRM v3)."""
    crm = settings.crm
    url = settings.url(crm.url)

    resolver = RecordKeys(settings.path("{data_dir}/clean/identity_map.parquet"), record_key=crm.record_key)
    if crm.connector == "sql":
        try:
            sa_url = sa.make_url(url)
        except sa.exc.ArgumentError:
            raise ConfigError(f"crm.url: {url!r} is not a SQLAlchemy URL (crm.connector is sql)") from None
        if sa_url.get_backend_name() == "sqlite":
            # the CRM's own file: never create an empty one by accident (and leave its journal mode alone)
            if crm.create and sa_url.database:
                Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
            elif not sa_url.database or not Path(sa_url.database).is_file():
                raise CrmError(
                    f"CRM database {sa_url.database} not found (crm.url)",
                    hint="run `persona data generate` for the demo CRM, point crm.url at your CRM, "
                    "or set crm.create: true for an embedded CRM of its own",
                )
            return SqlConnector(sa.create_engine(url, connect_args={"timeout": 30}), resolver=resolver)
        return SqlConnector(sa.create_engine(url, pool_pre_ping=True), resolver=resolver)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"crm.url: {url!r} is not an http(s) URL (crm.connector is http)")

    return HttpConnector(
        url,
        token=crm.token.get_secret_value() if crm.token else None,
        id_property=crm.id_property,
        resolver=resolver,
        timeout=crm.timeout_seconds,
    )

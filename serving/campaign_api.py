"""`GET /v1/campaigns/NAME`: a campaign's report as JSON (mounted on the BentoML service).

The same data `persona campaign report NAME --json` prints and the dashboard shows.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from configs.campaign import NAME_PATTERN
from serving.campaigns import campaign_report


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def make_app(settings_factory) -> Starlette:
    """The app; `settings_factory()` gives the service's settings (loaded once by the service)."""

    from core.errors import ValidationFailed

    name_re = re.compile(NAME_PATTERN)

    async def report(request: Request) -> Response:
        name = request.path_params["name"]
        if not name_re.fullmatch(name):
            return JSONResponse(
                {"error": "bad_name", "detail": f"not a campaign name: {name!r}"}, status_code=400
            )
        try:
            data = campaign_report(settings_factory(), name)
        except ValidationFailed as exc:
            status = 404 if str(exc).startswith("no campaign") else 409
            return JSONResponse(
                {"error": "not_found" if status == 404 else "not_ready", "detail": str(exc)},
                status_code=status,
            )
        return Response(json.dumps(_plain(data), default=str).encode("utf-8"), media_type="application/json")

    return Starlette(routes=[Route("/{name}", report, methods=["GET"])])

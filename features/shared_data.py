"""Where the public datasets live: read in place, never copied into the project."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """`$PERSONA_SHARED_DATA`, else `<repo>/../shared/data` (where CI puts the public datasets)."""
    env = os.environ.get("PERSONA_SHARED_DATA")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data").resolve()

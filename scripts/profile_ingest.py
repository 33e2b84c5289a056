"""Where `persona ingest` holds memory: RSS after each step and the peak inside it (a sampling thread);
with `--cpu FILE`, where it spends CPU too: a cProfile of the run timed in process CPU seconds (the
wall clock of a shared machine counts the neighbours), written to FILE for `pstats`.

PERSONA_DATA_DIR=data/w20k .venv/bin/python scripts/profile_ingest.py [--cpu data/ingest.prof]
"""

from __future__ import annotations

import cProfile
import functools
import sys
import threading
import time

import psutil

from configs.settings import load_settings
from features import ingest, schemas

proc = psutil.Process()
peak = [0]


def _sample() -> None:
    while True:
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.02)


def _wrap(module, name: str) -> None:
    inner = getattr(module, name)

    @functools.wraps(inner)
    def timed(*args, **kwargs):
        before = proc.memory_info().rss
        peak[0] = before
        started = time.perf_counter()
        out = inner(*args, **kwargs)
        after = proc.memory_info().rss
        label = args[0] if args and isinstance(args[0], str) else ""
        print(
            f"{name:22s} {label:12s} {time.perf_counter() - started:7.1f} s  rss {before / 2**20:7.0f} -> "
            f"{after / 2**20:7.0f} MB  peak inside {max(peak[0], after) / 2**20:7.0f} MB",
            flush=True,
        )
        return out

    setattr(module, name, timed)


threading.Thread(target=_sample, daemon=True).start()
for fname in (
    "read_source",
    "_type_source",
    "_stage_source",
    "_validate_source",
    "_route_refs",
    "_orders_from_lines",
    "resolve",
    "_customers",
    "_spooled_keys",
    "_spooled_table",
    "_clean_order_lines",
    "write_clean",
    "honour_consent_list",
    "ingest_frames",
):
    _wrap(ingest, fname)
for fname in ("validate", "type_columns", "parse_timestamps", "clean_labels", "parse_numbers"):
    _wrap(schemas, fname)
settings = load_settings()
cpu = sys.argv[sys.argv.index("--cpu") + 1] if "--cpu" in sys.argv else None
profile = cProfile.Profile(time.process_time) if cpu else None
if profile is not None:
    profile.enable()
ingest.run_ingest(settings)
if profile is not None:
    profile.disable()
    profile.dump_stats(cpu)
    print(f"CPU profile: {cpu} (python -m pstats {cpu}; sort tottime)")
print(f"max rss {psutil.Process().memory_info().rss / 2**20:.0f} MB (now)")

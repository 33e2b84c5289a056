"""`make bench`: run every bench/bench_*.py in its own process (clean memory figures), then gather
bench/results/*.md into BENCHMARKS.md. `BENCH=name make bench` runs only bench_<name>.py
(`BENCH=scale`, the long scale run, only so);
`python -m bench.run --gather` only rebuilds BENCHMARKS.md from the results already measured."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Benches that run for an hour or more: only when BENCH names them (`BENCH=scale make bench`).
ON_REQUEST = {"bench_scale"}


def main() -> int:
    only = os.environ.get("BENCH")
    scripts = [] if "--gather" in sys.argv[1:] else sorted((ROOT / "bench").glob("bench_*.py"))
    if only:
        scripts = [s for s in scripts if s.stem == f"bench_{only}"]
        if not scripts:
            print(f"bench: no bench/bench_{only}.py", file=sys.stderr)
            return 2
    else:
        scripts = [s for s in scripts if s.stem not in ON_REQUEST]
    failed = []
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        code = subprocess.call([sys.executable, "-m", f"bench.{script.stem}"], cwd=ROOT)
        if code:
            failed.append(script.stem)
    sections = [p.read_text(encoding="utf-8").strip() for p in sorted(RESULTS.glob("*.md"))]
    header = (
        "# Benchmarks\n\nProduced by `make bench` (each section names its own command). Machine: "
        f"{os.cpu_count()} cores, shared with other work while these ran: each section records its load. "
        f"Last gathered {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.\n"
    )
    (ROOT / "BENCHMARKS.md").write_text(header + "\n" + "\n\n".join(sections) + "\n", encoding="utf-8")
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

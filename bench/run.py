"""`make bench`: run every bench/bench_*.py in its own process (clean memory figures), then gather
bench/results/*.md into BENCHMARKS.md. `BENCH=name make bench` runs only bench_<name>.py
(`BENCH=scale`, the long scale run, only so);
`python -m bench.run --gather` only rebuilds BENCHMARKS.md from the results already measured.

Gathering is lossless: each generated section is preceded by a marker naming its results file and is
replaced by that file; a section without a marker was written by hand (figures from a command run once,
notes) and keeps its place. Results without a section yet are added at the end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Benches that run for an hour or more, or fill stores with a million customers: only when BENCH names
# them (`BENCH=scale make bench`, `BENCH=materialize make bench`).
ON_REQUEST = {"bench_scale", "bench_materialize"}
MARK = re.compile(r"^<!-- bench/results/([\w.-]+\.md) -->$")


def _marker(name: str) -> str:
    return f"<!-- bench/results/{name} -->"


def gather(existing: str, results: dict[str, str]) -> list[str]:
    """Sections of the new BENCHMARKS.md body: `existing` (the old body, header included or not) in its
    order with marked sections refreshed from `results` (file name -> text), hand sections kept."""
    blocks = re.split(r"(?m)^(?=<!-- bench/results/|## )", existing)
    out: list[str] = []
    seen: set[str] = set()
    pending: str | None = None  # a marker waiting for its section
    for block in blocks:
        lines = block.strip().splitlines()
        if not lines:
            continue
        m = MARK.match(lines[0])
        if m:
            pending = m.group(1)
            continue
        if not lines[0].startswith("## "):
            continue  # the file's own header is written anew
        if pending is not None:
            if pending in results and pending not in seen:
                out.append(f"{_marker(pending)}\n{results[pending].strip()}")
                seen.add(pending)
            pending = None
            continue
        out.append(block.strip())
    out += [f"{_marker(n)}\n{t.strip()}" for n, t in sorted(results.items()) if n not in seen]
    return out


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
    target = ROOT / "BENCHMARKS.md"
    existing = target.read_text(encoding="utf-8") if target.exists() else ""
    results = {p.name: p.read_text(encoding="utf-8") for p in RESULTS.glob("*.md")}
    sections = gather(existing, results)
    header = (
        "# Benchmarks\n\nProduced by `make bench` (each section names its own command). Machine: "
        f"{os.cpu_count()} cores, shared with other work while these ran: each section records its load. "
        f"Last gathered {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.\n"
    )
    target.write_text(header + "\n" + "\n\n".join(sections) + "\n", encoding="utf-8")
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

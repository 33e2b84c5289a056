"""bench.run.gather: BENCHMARKS.md is rebuilt from results without losing hand-written sections."""

from __future__ import annotations

from bench.run import gather

OLD = """# Benchmarks

header text

<!-- bench/results/a.md -->
## A
old figures of a

## Hand
figures from a command run once

<!-- bench/results/gone.md -->
## Gone
a bench that no longer writes results
"""


def test_generated_sections_refresh_and_hand_sections_stay_in_place():
    sections = gather(OLD, {"a.md": "## A\nnew figures of a\n", "b.md": "## B\nfirst figures of b\n"})
    assert sections == [
        "<!-- bench/results/a.md -->\n## A\nnew figures of a",
        "## Hand\nfigures from a command run once",
        "<!-- bench/results/b.md -->\n## B\nfirst figures of b",
    ]


def test_gathering_twice_changes_nothing():
    results = {"a.md": "## A\nx\n"}
    once = "\n\n".join(gather(OLD, results))
    assert gather(once, results) == gather(OLD, results)

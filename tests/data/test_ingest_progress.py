"""Long work shows progress: `persona ingest` at a million customers runs for many minutes, so it names
each phase as it starts (staging, validating, resolving, writing) with its rows so far, on stderr."""

from __future__ import annotations

import pytest

from core.progress import stepper


def test_a_stepper_prints_each_new_phase_at_once_and_repeats_at_most_every_interval(capsys) -> None:
    step = stepper("ingest", every=3600)
    step("staging events: 10 rows")
    step("staging events: 20 rows")  # same phase within the interval: not printed
    step("resolving identities: 5 records")
    step("staging events: 30 rows")  # a phase change prints, whatever came before
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "  ingest: staging events: 10 rows",
        "  ingest: resolving identities: 5 records",
        "  ingest: staging events: 30 rows",
    ]
    assert all(line.endswith("s)") for line in lines)


@pytest.fixture(scope="module")
def steps(tmp_path_factory) -> list[str]:
    from configs.settings import load_settings
    from features.ingest import run_ingest
    from features.synthetic.generate import generate

    data_dir = tmp_path_factory.mktemp("progress") / "data"
    settings = load_settings(data_dir=str(data_dir), sources={"as_of": "2026-01-01T00:00:00Z"})
    generate(settings.generator.model_copy(update={"customers": 150}), out=data_dir / "raw")
    heard: list[str] = []
    run_ingest(settings, step=heard.append)
    return heard


def test_ingest_names_its_phases_in_order_with_the_rows_counted(steps: list[str]) -> None:
    phases = list(dict.fromkeys(s.split(":")[0] for s in steps))
    assert phases.index("staging events") < phases.index("validating events")
    assert phases.index("validating orders") < phases.index("resolving identities")
    assert phases[-2:] == ["writing clean tables", "publishing"]
    counts = [int(s.split(": ")[1].split()[0].replace(",", "")) for s in steps if s.startswith("staging events")]
    assert counts == sorted(counts) and counts[-1] > 0  # rows so far, growing

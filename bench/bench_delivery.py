"""Delivery through a CRM outage (issue 12): 67,058 outbox entries, the HubSpot-contract fake refusing
connections (its port really closed) for 7 minutes of the dispatcher's simulated clock (injected
clock/sleep), then back. Prints one line of figures. Run: `.venv/bin/python -m bench.bench_delivery`."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from serving.outbox import Outbox, make_state_engine
from tests.fakes.hubspot import FakeHubSpot
from tests.service.test_crm_guarantees import (
    TOKEN,
    VALUES,
    FakeClock,
    change,
    connector,
    dispatcher,
    enqueue,
    re_applied,
)

N = 67_058
OUTAGE_SECONDS = 7 * 60


def main() -> None:
    box = Outbox(make_state_engine(f"sqlite:///{Path(tempfile.mkdtemp())}/persona.sqlite"))
    box.create_schema()
    enqueue(box, [change(f"P{i:06d}", VALUES[i % 3]) for i in range(N)])
    with FakeHubSpot(token=TOKEN) as fake:
        clock = FakeClock()
        back = clock() + OUTAGE_SECONDS
        fake.refuse_connections()
        clock.on_sleep = lambda now: fake.accept_connections() if now >= back else None
        wall, cpu = time.perf_counter(), time.process_time()
        stats = dispatcher(box, connector(fake), clock, batch_size=500).run_until_empty()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"entries {N}; simulated outage {OUTAGE_SECONDS}s; refused probes "
            f"{stats.requests - fake.state.requests}; delivered {stats.delivered}; dead {stats.dead}; "
            f"requests applied twice {len(re_applied(fake))}; values applied {len(fake.applied)}; "
            f"wall {wall:.1f}s, cpu {cpu:.1f}s; outbox {box.counts()}"
        )


if __name__ == "__main__":
    main()

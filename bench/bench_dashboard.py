"""Dashboard render times at 100,000 customers, and screenshots of every page.

`BENCH=dashboard make bench` (after `make demo`): the demo world (`./data`, or $PERSONA_BENCH_SOURCE) is
scaled to N customers (default 100,000; $PERSONA_BENCH_DASHBOARD_CUSTOMERS) by copying each customer
under new ids: clean tables, feature snapshots, batch scores and the state database (current tags, tag
history, outbox) grow with it; the MLflow registry is the demo's. Each page is then requested through
the dashboard's ASGI app (HTML fully rendered, bearer key): cold = a new dashboard (numbers read
from the summaries the scoring job saved), warm = the same dashboard again (kept until the data changes).
Medians of 5 warm requests. Then a real `persona serve` over the demo world is opened in chromium and
every page is screenshot in English and Chinese: data/screenshots/ (full size) and docs/screenshots/
(small PNGs, referenced from README).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
KEY = "bench-dashboard-key-0123456789"


def scaled_id(customer_id: str, copy: int) -> str:
    """A new Persona-shaped id ("P" + 12 hex) for copy `copy` of a customer (copy 0 keeps its id)."""
    if copy == 0:
        return customer_id
    return "P" + hashlib.sha256(f"{customer_id}/{copy}".encode()).hexdigest()[:12]


def _scale_ids(ids: pd.Series, copy: int) -> pd.Series:
    if copy == 0:
        return ids
    mapping = {i: scaled_id(i, copy) for i in ids.unique()}
    return ids.map(mapping)


def _scale_table(
    src: Path, dst: Path, copies: int, *, key: str = "customer_id", also: tuple[str, ...] = ()
) -> None:
    frame = pd.read_parquet(src)
    parts = []
    for c in range(copies):
        part = frame.copy()
        part[key] = _scale_ids(part[key].astype(str), c)
        for column in also:  # other ids that must stay unique (order ids, record ids)
            part[column] = part[column].astype(str) + ("" if c == 0 else f"-{c}")
        parts.append(part)
    dst.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(parts, ignore_index=True).to_parquet(dst, index=False)


def scale_world(source: Path, target: Path, customers: int) -> int:
    """Copy `source` to `target` with every customer repeated under new ids; returns the copies made."""
    base = pq.read_metadata(source / "clean" / "customers.parquet").num_rows
    copies = max(1, -(-customers // base))  # at least `customers`
    stamp = f"{source}:{(source / 'scores' / 'latest.parquet').stat().st_mtime}:{copies}"
    marker = target / "scaled-from.txt"
    if marker.is_file() and marker.read_text() == stamp:
        return copies  # already scaled from this very demo world
    if target.exists():
        shutil.rmtree(target)
    for folder in ("mlflow", "tags", "feast"):
        if (source / folder).exists():
            shutil.copytree(source / folder, target / folder)
    _scale_table(source / "clean" / "customers.parquet", target / "clean" / "customers.parquet", copies)
    _scale_table(
        source / "clean" / "orders.parquet", target / "clean" / "orders.parquet", copies, also=("order_id",)
    )
    _scale_table(source / "clean" / "events.parquet", target / "clean" / "events.parquet", copies)
    _scale_table(
        source / "clean" / "identity_map.parquet",
        target / "clean" / "identity_map.parquet",
        copies,
        also=("source_record_id",),
    )
    for path in sorted((source / "features").glob("*.parquet")):
        _scale_table(path, target / "features" / path.name, copies)
    _scale_table(source / "scores" / "latest.parquet", target / "scores" / "latest.parquet", copies)
    _scale_state(source / "state" / "persona.sqlite", target / "state" / "persona.sqlite", copies)
    marker.write_text(stamp)
    return copies


def _scale_state(src: Path, dst: Path, copies: int) -> None:
    """Current tags, tag history and outbox of every customer copy (same values, new ids)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    con = sqlite3.connect(dst)
    con.create_function("scaled", 2, scaled_id)
    for table in ("tag_current", "tag_history", "crm_outbox"):
        columns = [r[1] for r in con.execute(f"pragma table_info({table})")]
        keep = [c for c in columns if c != "id"]
        select = ", ".join(
            "scaled(customer_id, :c)"
            if c == "customer_id"
            else (f"{c} || '-' || :c" if c in ("idempotency_key", "change_id") else c)
            for c in keep
        )
        con.execute(f"create temp table base as select * from {table}")
        for c in range(1, copies):
            con.execute(f"insert into {table} ({', '.join(keep)}) select {select} from base", {"c": c})
        con.execute("drop table base")
    con.commit()
    con.close()


def _timed_get(client, url: str) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    response = client.get(url, headers={"Authorization": f"Bearer {KEY}"})
    seconds = time.perf_counter() - t0
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    return seconds


def measure(data_dir: Path, customer_query: str) -> tuple[list[tuple[str, float, float]], float]:
    """(page, cold seconds, warm median seconds) through the ASGI app, in-process; and the seconds the
    scoring job spends saving the dashboard's summaries (`summary.write_summaries`)."""
    os.environ["PERSONA_DATA_DIR"] = str(data_dir)
    os.environ["PERSONA_API_KEYS"] = KEY
    import mlflow  # noqa: F401 - loaded by the scoring job before it writes the summaries
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from configs.settings import load_settings
    from features.feast_io import get_store
    from serving.auth import load_api_keys
    from serving.dashboard.app import Dashboard
    from serving.dashboard.summary import write_summaries

    get_store(load_settings())  # likewise Feast
    for path in (data_dir / "dashboard").glob("*"):  # as a scoring run finds them: none of its own yet
        path.unlink()
    t0 = time.perf_counter()
    write_summaries(load_settings())
    summaries = time.perf_counter() - t0
    pages = [
        ("overview", "/dashboard/?lang=en"),
        ("overview (zh)", "/dashboard/?lang=zh"),
        ("model health", "/dashboard/models?lang=en"),
        ("customer 360 (business key)", f"/dashboard/customer?id={customer_query}&lang=en"),
    ]

    # imports (mlflow, feast, plotly) happen once per process in the service too: not part of a page
    def mounted(dashboard: Dashboard) -> Starlette:  # as the service mounts it
        return Starlette(routes=[Mount("/dashboard", app=dashboard)])

    with TestClient(mounted(Dashboard(load_settings, digests=load_api_keys))) as client:
        for _, url in pages:
            client.get(url, headers={"Authorization": f"Bearer {KEY}"})
    rows = []
    for name, url in pages:
        dashboard = Dashboard(load_settings, digests=load_api_keys)
        with TestClient(mounted(dashboard)) as client:
            cold = _timed_get(client, url)
            warm = statistics.median(_timed_get(client, url) for _ in range(5))
        rows.append((name, cold, warm))
    return rows, summaries


def screenshots(source: Path) -> list[Path]:
    """Every page in both languages from a real `persona serve` over the demo world, in chromium."""
    from playwright.sync_api import sync_playwright

    from tests.service.conftest import API_KEY
    from tests.service.dashboard_browser import launch, sign_in, visit
    from tests.service.test_service_server import _start, _stop

    ids = pd.read_parquet(source / "clean" / "identity_map.parquet")
    scores = pd.read_parquet(source / "scores" / "latest.parquet")
    pool = scores["customer_id"]
    state = sqlite3.connect(source / "state" / "persona.sqlite")
    try:  # a customer in the demo's campaign, so the 360 page shows an assignment
        assigned = {r[0] for r in state.execute("select customer_id from campaign_assignments")}
    except sqlite3.OperationalError:
        assigned = set()
    state.close()
    if pool.isin(assigned).any():
        pool = pool[pool.isin(assigned)]
    contact = ids[(ids["source"] == "contacts") & ids["customer_id"].isin(pool)]["source_record_id"].iloc[0]
    tmp = ROOT / "data" / "bench" / "serve-dashboard"
    tmp.mkdir(parents=True, exist_ok=True)
    proc, base, _ = _start(source, tmp, PERSONA_SERVING__WORKERS="1")  # with the test suite's key
    out_full = ROOT / "data" / "screenshots"
    out_docs = ROOT / "docs" / "screenshots"
    written = []
    try:
        time.sleep(5)  # let the service warm the dashboard's numbers
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            sign_in(page, base, API_KEY)
            for lang in ("en", "zh"):
                for name, path in (
                    ("overview", f"/dashboard/?lang={lang}"),
                    ("models", f"/dashboard/models?lang={lang}"),
                    ("customer", f"/dashboard/customer?id={contact}&lang={lang}"),
                ):
                    url = f"{base}{path}"
                    seen = visit(page, url, screenshot=out_full / f"{name}_{lang}.png")
                    assert not seen.console_errors and seen.charts == seen.charts_drawn, seen
                    written.append(out_full / f"{name}_{lang}.png")
            page.goto(f"{base}/")
            page.wait_for_selector(".opblock", timeout=30_000)
            page.screenshot(path=str(out_full / "api_docs.png"))
            written.append(out_full / "api_docs.png")
            browser.close()
    finally:
        _stop(proc)
    out_docs.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for path in written:  # small copies for the docs: half size, 64 colours
        image = Image.open(path).convert("RGB")
        image = image.resize((image.width // 2, image.height // 2), Image.LANCZOS)
        image.quantize(colors=64).save(out_docs / path.name, optimize=True)
    return written


def main() -> int:
    source = Path(os.environ.get("PERSONA_BENCH_SOURCE", ROOT / "data")).resolve()
    if not (source / "scores" / "latest.parquet").is_file():
        print(f"bench_dashboard: no scored demo world at {source}; run `make demo` first", file=sys.stderr)
        return 2
    customers = int(os.environ.get("PERSONA_BENCH_DASHBOARD_CUSTOMERS", "100000"))
    target = ROOT / "data" / "bench" / "dashboard"
    t0 = time.perf_counter()
    copies = scale_world(source, target, customers)
    scaled = pq.read_metadata(target / "clean" / "customers.parquet").num_rows
    build = time.perf_counter() - t0
    ids = pd.read_parquet(target / "clean" / "identity_map.parquet", columns=["source", "source_record_id"])
    query = str(ids[ids["source"] == "contacts"]["source_record_id"].iloc[-1])  # a key of the last copy
    rows, summaries = measure(target, query)
    shots = [] if os.environ.get("PERSONA_BENCH_NO_SCREENSHOTS") else screenshots(source)
    load = os.getloadavg()[0]
    lines = [
        "## Dashboard (issue 15)",
        "",
        f"`BENCH=dashboard make bench`: the demo world scaled x{copies} to {scaled:,} customers "
        f"(built in {build:.0f} s); each page through the dashboard's ASGI app with HTML rendered; "
        "cold = a new dashboard (a service just started: imports done, nothing in memory) reading the "
        "summaries the scoring job saved (`{data_dir}/dashboard/*.json`) and the sorted copies the 360 "
        "lookups read, warm = the same dashboard again (numbers and words kept per data state and "
        f"language; median of 5). Saving the summaries and sorted copies at score time took {summaries:.1f} s "
        "(the cost a page would pay without them; a dashboard whose data moved since recomputes in the "
        "background and shows the saved numbers meanwhile). "
        f"Load average {load:.1f} on {os.cpu_count()} cores while measuring.",
        "",
        "| page | cold | warm (median of 5) |",
        "|---|---|---|",
        *[f"| {name} | {cold * 1000:,.0f} ms | {warm * 1000:,.0f} ms |" for name, cold, warm in rows],
    ]
    if shots:
        lines += [
            "",
            "Screenshots (chromium, demo world): " + ", ".join(f"docs/screenshots/{p.name}" for p in shots),
        ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dashboard.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

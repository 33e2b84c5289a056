"""The dashboard in a real browser (Debian's chromium driven by Playwright), served by a real
`persona serve` over a trained, scored and delivered small world: every page in English and Chinese
loads with no console error and no failed request, its charts draw, Chinese labels appear with
`lang=zh`, the customer 360 finds a customer by Persona id and by CRM contact id, nothing answers
without a key or a session, and the Swagger UI at `/` renders. Screenshots of every page are written
under the world's `screenshots/` (or $PERSONA_SCREENSHOTS)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.service.conftest import API_KEY, env
from tests.service.dashboard_browser import chromium_path, launch, sign_in, visit
from tests.service.test_service_server import _start, _stop

pytestmark = [pytest.mark.integration, pytest.mark.slow]
playwright_api = pytest.importorskip("playwright.sync_api")

PAGES = {"overview": "/dashboard/", "models": "/dashboard/models", "customer": "/dashboard/customer"}


@pytest.fixture(scope="module")
def scored_world(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the world, scored in batch and delivered to its CRM (the shared world stays untouched)."""
    from features.clock import clean_as_of
    from persona.cli import main

    data_dir = tmp_path_factory.mktemp("dash") / "data"
    shutil.copytree(world, data_dir)
    with env(PERSONA_DATA_DIR=str(data_dir)):
        assert main(["score", "--all"]) == 0
        # A campaign that started 20 days before the data's as-of: its window is open, its outcome read
        # from the orders since the start; the next scoring saves the dashboard's numbers with it.
        from configs.settings import load_settings

        start = (clean_as_of(load_settings()) - pd.Timedelta(days=20)).date()
        spec = data_dir / "promo.yaml"
        spec.write_text(
            'name: promo\ndescription: A test offer\naudience: "true"\n'
            "arms:\n  - {name: offer, share: 0.5}\n  - {name: holdout, share: 0.5, control: true}\n"
            f"start: {start}\nend: {start + pd.Timedelta(days=30)}\n"
            "outcome: {kind: conversion, window_days: 30}\nbreakdown_by: [persona_name]\n",
            encoding="utf-8",
        )
        assert main(["campaign", "create", "promo", "--file", str(spec)]) == 0
        assert main(["campaign", "assign", "promo"]) == 0
        assert main(["score", "--all"]) == 0
        assert main(["crm", "sync"]) == 0
    return data_dir


@pytest.fixture(scope="module")
def server(scored_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, base, _ = _start(scored_world, tmp_path_factory.mktemp("serve-dash"), PERSONA_SERVING__WORKERS="1")
    try:
        yield base
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if chromium_path() is None:
        pytest.skip("no chromium (make services installs it from Debian's packages)")
    with playwright_api.sync_playwright() as p:
        b = launch(p)
        try:
            yield b
        finally:
            b.close()


def _assignments(world: Path, campaign: str) -> pd.DataFrame:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{world / 'state' / 'persona.sqlite'}")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select customer_id, arm from campaign_assignments where campaign = :c"), {"c": campaign}
        ).all()
    engine.dispose()
    return pd.DataFrame(rows, columns=["customer_id", "arm"])


def _a_contact(world: Path, *, campaign: str | None = None) -> tuple[str, str]:
    """(CRM contact id, Persona id) of a scored customer who has a CRM contact record (and was assigned
    to `campaign`)."""
    ids = pd.read_parquet(world / "clean" / "identity_map.parquet")
    scores = pd.read_parquet(world / "scores" / "latest.parquet")
    pool = scores["customer_id"]
    if campaign is not None:
        pool = pool[pool.isin(_assignments(world, campaign)["customer_id"])]
    contacts = ids[(ids["source"] == "contacts") & ids["customer_id"].isin(pool)]
    row = contacts.iloc[0]
    return str(row["source_record_id"]), str(row["customer_id"])


def test_nothing_answers_without_a_key_or_a_session(server: str) -> None:
    for path in PAGES.values():
        plain = httpx.get(f"{server}{path}", timeout=30)
        assert plain.status_code == 401 and "unauthorized" in plain.text
        html = httpx.get(f"{server}{path}", headers={"Accept": "text/html"}, timeout=30)
        assert html.status_code == 303 and html.headers["location"].startswith("/dashboard/login")
    wrong = httpx.post(
        f"{server}/dashboard/login", data={"api_key": "x" * 24, "next": "/dashboard/"}, timeout=30
    )
    assert wrong.status_code == 401 and "persona_session" not in wrong.headers.get("set-cookie", "")
    forged = httpx.get(f"{server}/dashboard/", cookies={"persona_session": "9999999999.abc"}, timeout=30)
    assert forged.status_code == 401
    assert httpx.post(f"{server}/v1/score", json={"customer_ids": ["x"]}, timeout=30).status_code == 401
    ok = httpx.get(f"{server}/dashboard/", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    assert ok.status_code == 200 and "plotly.min.js" in ok.text and "cdn" not in ok.text.lower()


def test_every_page_in_both_languages_in_a_real_browser(server: str, browser, scored_world: Path) -> None:  # type: ignore[no-untyped-def]
    shots = Path(os.environ.get("PERSONA_SCREENSHOTS") or scored_world / "screenshots")
    contact_id, customer_id = _a_contact(scored_world, campaign="promo")
    arms = _assignments(scored_world, "promo")
    assigned = dict(zip(arms["customer_id"], arms["arm"], strict=True))
    sizes = arms["arm"].value_counts().to_dict()
    context = browser.new_context(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    sign_in(page, server, API_KEY)
    cookie = next(c for c in context.cookies() if c["name"] == "persona_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and API_KEY not in cookie["value"]

    for lang in ("en", "zh"):
        urls = {
            "overview": f"{PAGES['overview']}?lang={lang}",
            "models": f"{PAGES['models']}?lang={lang}",
            "customer": f"{PAGES['customer']}?id={contact_id}&lang={lang}",
        }
        for name, path in urls.items():
            seen = visit(page, f"{server}{path}", screenshot=shots / f"{name}_{lang}.png")
            assert seen.status == 200, f"{name} {lang}: {seen.status}"
            assert not seen.console_errors, f"{name} {lang}: {seen.console_errors}"
            assert not seen.failed_requests, f"{name} {lang}: {seen.failed_requests}"
            assert seen.charts == seen.charts_drawn, f"{name} {lang}: {seen.charts_drawn}/{seen.charts} drawn"
            if name != "customer":
                assert seen.charts >= 3, f"{name} {lang}: only {seen.charts} charts"
            chinese = {
                "overview": ["画像客户数", "流失风险", "客户画像分群", "建议动作", "营销活动效果", "对照组"],
                "models": ["模型健康", "特征漂移"],
                "customer": ["标签及原因", "最近订单", "营销活动分配"],
            }
            english = {
                "overview": ["Customers in profile", "Churn risk", "Suggested action", "Campaign results"],
                "models": ["Feature drift"],
                "customer": ["Tags and why", "Recent orders", "Campaign assignments"],
            }
            for label in (chinese if lang == "zh" else english)[name]:
                assert label in seen.text, f"{name} {lang}: no {label!r}"
            if name == "customer":
                assert customer_id in seen.text  # found by the business's own key
                arm = assigned.get(customer_id)
                assert arm is not None and f"{arm} (" in seen.text, "the 360 page names the customer's arm"
            if name == "overview":
                campaign = page.locator('[data-campaign="promo"]')
                assert campaign.count() == 1, "the campaign's results are on the overview"
                for arm in ("offer", "holdout"):  # arm sizes as assigned
                    row = campaign.locator(f'.campaign-arms tr[data-arm="{arm}"]').inner_text()
                    assert f"{sizes[arm]:,}" in row, (arm, row)
                effect = campaign.locator(".campaign-effects").inner_text()
                assert "offer vs holdout" in effect and " pp" in effect and "[" in effect
                assert campaign.locator(".chart svg").count() >= 1  # the effect chart drew
    # by Persona id, too; and an unknown id says so
    by_id = visit(page, f"{server}{PAGES['customer']}?id={customer_id}&lang=en")
    assert by_id.status == 200 and customer_id in by_id.text and "Scores and reasons" in by_id.text
    unknown = visit(page, f"{server}{PAGES['customer']}?id=NOBODY-123&lang=en")
    assert unknown.status == 404 and "No customer with id NOBODY-123" in unknown.text
    context.close()


def test_the_api_docs_page_renders_without_a_key(server: str, browser) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page()  # type: ignore[attr-defined]
    local_failures: list[str] = []
    page.on(
        "response",
        lambda r: (
            local_failures.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.url.startswith(server)
            else None
        ),
    )
    page.goto(f"{server}/")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert page.locator(".opblock").count() >= 3  # /v1/score, /v1/churn, ...
    assert "/v1/score" in page.inner_text("body")
    assert not local_failures, local_failures  # BentoML's page also links outside sites: offline, ignored
    page.close()

"""Driving the dashboard in a real browser: Debian's chromium through Playwright for Python (Playwright's
own browser download cannot work offline). Used by the browser tests and by `bench/bench_dashboard.py`
(which also writes the screenshots in docs/screenshots/)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """The system chromium, or None (the browser tests then skip with the reason)."""
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


@dataclass
class PageVisit:
    url: str
    status: int
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    charts: int = 0
    charts_drawn: int = 0  # charts holding a non-empty <svg class="main-svg">
    text: str = ""
    load_seconds: float = 0.0


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)


def sign_in(page: Any, base: str, api_key: str) -> None:
    """Sign in through the login form (the key is exchanged for the session cookie)."""
    page.goto(f"{base}/dashboard/login")
    page.fill("#api_key", api_key)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def visit(page: Any, url: str, *, screenshot: Path | None = None) -> PageVisit:
    """Open a page and record what a person would notice: errors in the console, requests that failed,
    charts that did not draw. Takes a full-page screenshot when asked."""
    import time

    errors: list[str] = []
    failed: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error":
            errors.append(message.text)

    def on_response(response: Any) -> None:
        if response.status >= 400 and response.url != url:
            failed.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda request: failed.append(f"failed {request.url}"))
    page.on("response", on_response)
    start = time.perf_counter()
    response = page.goto(url, wait_until="networkidle")
    charts = page.locator("div.chart").count()
    if charts:
        page.wait_for_function("document.body.dataset.chartsDrawn === 'true'", timeout=30_000)
    drawn = page.evaluate(
        """() => [...document.querySelectorAll('div.chart')].filter(el => {
               const svg = el.querySelector('svg.main-svg');
               if (!svg) return false;
               const box = svg.getBoundingClientRect();
               return box.width > 50 && box.height > 50 && el.querySelectorAll('.trace, .slice, path.surface, .bars, .funnel').length > 0;
           }).length"""
    )
    seconds = time.perf_counter() - start
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    page.remove_listener("console", on_console)
    page.remove_listener("response", on_response)
    return PageVisit(
        url=url,
        status=response.status if response else 0,
        console_errors=errors,
        failed_requests=failed,
        charts=charts,
        charts_drawn=drawn,
        text=page.inner_text("body"),
        load_seconds=seconds,
    )

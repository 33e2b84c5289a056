"""The dashboard as an ASGI app, mounted by the scoring service at `/dashboard` (`persona serve`).

Pages: `/dashboard/` (overview), `/dashboard/models` (model health), `/dashboard/customer?id=...`
(customer 360); `?lang=zh` for Chinese. Access: a browser signs in at `/dashboard/login` with an API key
and gets a session cookie; scripts may send `Authorization: Bearer <key>` instead. Only the login page
and the static files (CSS, JS, the plotly.js bundle: no data) answer without either.

Numbers are computed once per state of the data (files' modification times, the tag history's and the
outbox's high-water marks) and reused until that changes, so a page renders from memory after the first
request; the bench measures both.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from configs.settings import Settings
from serving.auth import is_authorized
from serving.dashboard.session import COOKIE, SessionSigner

log = logging.getLogger("persona.dashboard")
HERE = Path(__file__).parent
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
# No inline script may run; charts, styles and data come from this origin only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class _Cache:
    """One value per name, recomputed when its key changes. With `stale=True` a changed key returns the
    previous value at once and recomputes in the background (a page never waits for a recount of
    100,000 customers after a scoring run; it shows the new numbers a few seconds later)."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        self._refreshing: set[str] = set()

    def has(self, name: str) -> bool:
        with self._lock:
            return name in self._values

    def peek(self, name: str) -> tuple[Any, Any] | None:
        with self._lock:
            return self._values.get(name)

    def set(self, name: str, key: Any, value: Any) -> None:
        with self._lock:
            self._values[name] = (key, value)

    def put(self, name: str, key: Any, value: Any) -> None:
        with self._lock:
            self._values.setdefault(name, (key, value))

    def get(self, name: str, key: Any, compute: Callable[[], Any], *, stale: bool = False) -> Any:
        with self._lock:
            hit = self._values.get(name)
            if hit is not None and hit[0] == key:
                return hit[1]
            if hit is not None and stale:
                if name not in self._refreshing:
                    self._refreshing.add(name)
                    threading.Thread(target=self._refresh, args=(name, key, compute), daemon=True).start()
                return hit[1]
        value = compute()
        with self._lock:
            self._values[name] = (key, value)
        return value

    def _refresh(self, name: str, key: Any, compute: Callable[[], Any]) -> None:
        try:
            value = compute()
            with self._lock:
                self._values[name] = (key, value)
        finally:
            with self._lock:
                self._refreshing.discard(name)


class Dashboard:
    """The dashboard of one Persona deployment. `settings` is loaded on first use when given as a
    callable (the service module is imported before its settings are needed)."""

    def __init__(
        self,
        settings: Settings | Callable[[], Settings],
        *,
        digests: list[bytes] | Callable[[], list[bytes]],
        root: str = "/dashboard",
    ) -> None:
        self._settings_source = settings
        self._digests_source = digests
        self.root = root.rstrip("/")
        self._scorer: Callable[[], Any] = lambda: None
        self._cache = _Cache()
        self._ready_lock = threading.Lock()
        self._settings: Settings | None = None
        self._signer: SessionSigner | None = None
        self._digests: list[bytes] = []
        self._env: Any = None
        self._texts: Any = None
        self._plotly: tuple[bytes, bytes] | None = None
        self.app = Starlette(
            routes=[
                Route("/", self.overview),
                Route("/models", self.models),
                Route("/customer", self.customer),
                Route("/login", self.login, methods=["GET", "POST"]),
                Route("/logout", self.logout, methods=["POST"]),
                Route("/static/{name}", self.static),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def attach_scorer(self, get_scorer: Callable[[], Any]) -> None:
        """Let the 360 page score live through the service's loaded models (`get_scorer()` -> Scorer
        or None while loading); without it the page shows the last batch scores."""
        self._scorer = get_scorer

    def warm(self) -> None:
        """Compute every page's numbers once (in the background at service start), so the first visitor
        does not wait for them; failures are left for the page to show."""
        try:
            self.overview_data()
            self.models_data()
            self.lookups()
            self.customer_data("-")
        except Exception as exc:  # e.g. nothing built yet: the pages say what is missing
            log.info("dashboard not warmed: %s", exc)

    # ---------------------------------------------------------------------------------- set-up
    def _ready(self) -> Settings:
        if self._settings is not None:
            return self._settings
        with self._ready_lock:
            if self._settings is None:
                import jinja2

                from artifacts.texts import read_texts

                settings = (
                    self._settings_source() if callable(self._settings_source) else self._settings_source
                )
                self._digests = (
                    self._digests_source() if callable(self._digests_source) else self._digests_source
                )
                self._signer = SessionSigner(self._digests, hours=settings.dashboard.session_hours)
                self._texts = read_texts(settings.dashboard.texts_path())
                self._env = jinja2.Environment(
                    loader=jinja2.FileSystemLoader(HERE / "templates"),
                    autoescape=True,
                    trim_blocks=True,
                    lstrip_blocks=True,
                )
                self._settings = settings
        return self._settings

    # ---------------------------------------------------------------------------------- access
    def _authorized(self, request: Request) -> bool:
        assert self._signer is not None
        if self._signer.valid(request.cookies.get(COOKIE)):
            return True
        return is_authorized(request.headers.get("authorization"), self._digests)

    def _refuse(self, request: Request) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{self.root}/login?next={quote(target)}", status_code=303)
        return Response(
            '{"error": "unauthorized", "detail": "sign in at /dashboard/login or send a bearer API key"}',
            status_code=401,
            media_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="persona"'},
        )

    def _lang(self, request: Request) -> str:
        settings = self._ready()
        lang = (
            request.query_params.get("lang")
            or request.cookies.get("persona_lang")
            or settings.dashboard.language
        )
        return lang if lang in ("en", "zh") else "en"

    def _render(
        self, request: Request, template: str, context: dict[str, Any], *, status: int = 200
    ) -> Response:
        import plotly

        context = dict(context)
        lang = context.pop("lang", None) or self._lang(request)
        params = dict(request.query_params)
        params["lang"] = "en" if lang == "zh" else "zh"
        body = self._env.get_template(template).render(
            lang=lang,
            root=self.root,
            t=lambda key, **kw: self._texts.ui_text(key, lang, **kw),
            switch_url=f"{request.url.path}?{urlencode(params)}",
            plotly_version=plotly.__version__,
            **context,
        )
        response = HTMLResponse(body, status_code=status)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "same-origin"
        if request.query_params.get("lang") in ("en", "zh"):
            response.set_cookie("persona_lang", lang, httponly=True, samesite="strict", path=self.root)
        return response

    # ---------------------------------------------------------------------------------- pages
    def _catalog_tags(self) -> Any:
        from serving.dashboard.overview import catalog_tags

        settings = self._ready()
        path = settings.tags.catalog_path()
        return self._cache.get("tags", path.stat().st_mtime, lambda: catalog_tags(settings))

    def _engine(self) -> Any:
        from serving.dashboard import sources

        settings = self._ready()
        return self._cache.get("engine", settings.state_url, lambda: sources.state_engine(settings))

    def _summarized(
        self,
        name: str,
        key: Any,
        compute: Callable[[], Any],
        encode: Callable[[Any], dict[str, Any]],
        decode: Callable[[dict[str, Any]], Any],
    ) -> Any:
        """A page's numbers for data state `key`: from memory; at a cold start from the summary file
        (`summary.py`) when one exists, recomputed in the background if the data moved since it was
        written; computed (and saved) here only when there is no file at all."""
        from serving.dashboard import summary

        key = summary.normal_key(key)
        path = summary.folder(self._ready()) / f"{name}.json"
        if not self._cache.has(name):
            saved = summary.read(path)
            if saved is not None:
                try:
                    self._cache.put(name, saved[0], decode(saved[1]))
                except (KeyError, TypeError, ValueError) as exc:  # a hand-edited or odd file: recompute
                    log.info("dashboard summary %s not used: %s", path, exc)

        def fresh() -> Any:
            value = compute()
            try:
                summary.write(path, key, encode(value))
            except OSError as exc:  # a read-only data dir: the page still works from memory
                log.warning("dashboard summary %s not written: %s", path, exc)
            return value

        return self._cache.get(name, key, fresh, stale=True)

    def _worded(self, name: str, data: Any, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A page's words and chart specs in one language, kept while its numbers are the same object
        (the numbers change with the data's state, so this is a cache per data state and language)."""
        hit = self._cache.peek(name)
        if hit is not None and hit[0] is data:
            return hit[1]
        context = build()
        self._cache.set(name, data, context)
        return context

    def overview_key(self) -> tuple[Any, ...]:
        """The state of everything the overview reads (files, the state DB, the tag catalog)."""
        from serving.dashboard import sources

        settings = self._ready()
        return (
            sources.files_fingerprint(settings),
            sources.state_fingerprint(self._engine()),
            settings.tags.catalog_path().stat().st_mtime,
        )

    def _compute_overview(self) -> Any:
        from serving.dashboard.overview import build_overview

        return build_overview(self._ready(), tags=self._catalog_tags(), engine=self._engine())

    def overview_data(self) -> Any:
        """The overview's numbers (kept per state of the data; see `_summarized`)."""
        from serving.dashboard import summary

        return self._summarized(
            "overview",
            self.overview_key(),
            self._compute_overview,
            summary.overview_payload,
            summary.overview_from,
        )

    def models_key(self) -> tuple[Any, ...]:
        from artifacts.registry import configure_tracking
        from serving.dashboard import sources

        settings = self._ready()
        uri = configure_tracking(settings)
        registry = (
            Path(uri.removeprefix("sqlite:///")).stat().st_mtime
            if uri.startswith("sqlite:///")
            else time.time() // 30
        )
        return (sources.files_fingerprint(settings), registry)

    def _compute_models(self) -> tuple[Any, Any, Any]:
        from serving.dashboard import sources
        from serving.dashboard.model_health import (
            champions_key,
            feature_drift,
            registry_health,
            view_freshness,
        )

        settings = self._ready()
        files, registry = self.models_key()
        models = self._cache.get("registry", registry, lambda: registry_health(settings))
        drift = self._cache.get(
            "drift", (files, champions_key(models)), lambda: feature_drift(settings, models)
        )
        freshness = self._cache.get(
            "freshness", files, lambda: view_freshness(settings, sources.data_as_of(settings))
        )
        return models, drift, freshness

    def models_data(self) -> tuple[Any, Any, Any]:
        from serving.dashboard import summary

        return self._summarized(
            "models",
            self.models_key(),
            self._compute_models,
            lambda value: summary.models_payload(*value),
            summary.models_from,
        )

    def save_summaries(self) -> None:
        """Compute both pages' numbers now and save them (after a batch scoring)."""
        from serving.dashboard import summary

        folder = summary.folder(self._ready())
        summary.write(
            folder / "overview.json", self.overview_key(), summary.overview_payload(self._compute_overview())
        )
        summary.write(
            folder / "models.json", self.models_key(), summary.models_payload(*self._compute_models())
        )
        self.lookups()

    def lookups(self) -> None:
        """The sorted copies the 360 page's lookups read (built when their source changed)."""
        from serving.dashboard import sources

        sources.lookup_tables(self._ready())

    async def overview(self, request: Request) -> Response:
        self._ready()
        if not self._authorized(request):
            return self._refuse(request)
        from starlette.concurrency import run_in_threadpool

        from serving.dashboard.pages import overview_context

        data = await run_in_threadpool(self.overview_data)
        lang = self._lang(request)
        context = self._worded(f"overview.{lang}", data, lambda: overview_context(data, self._texts, lang))
        return self._render(
            request,
            "overview.html",
            {
                "page": "overview",
                "page_title": self._texts.ui_text("overview", lang),
                "charts": True,
                **context,
            },
        )

    async def models(self, request: Request) -> Response:
        settings = self._ready()
        if not self._authorized(request):
            return self._refuse(request)
        from starlette.concurrency import run_in_threadpool

        from serving.dashboard.pages import models_context

        data = await run_in_threadpool(self.models_data)
        lang = self._lang(request)
        context = self._worded(
            f"models.{lang}",
            data,
            lambda: models_context(*data, self._texts, lang, psi_warning=settings.dashboard.psi_warning),
        )
        return self._render(
            request,
            "models.html",
            {
                "page": "models",
                "page_title": self._texts.ui_text("model_health", lang),
                "charts": True,
                **context,
            },
        )

    def customer_data(self, query: str) -> Any:
        from serving.dashboard.customer import load_customer
        from serving.tag_store import TagStore

        settings = self._ready()
        try:
            scorer = self._scorer()
        except Exception:  # the service is still loading or its store is down: batch scores instead
            scorer = None
        return load_customer(settings, query, scorer=scorer, tag_store=TagStore(self._engine()))

    async def customer(self, request: Request) -> Response:
        self._ready()
        if not self._authorized(request):
            return self._refuse(request)
        from starlette.concurrency import run_in_threadpool

        from serving.dashboard.pages import customer_context

        lang = self._lang(request)
        query = (request.query_params.get("id") or "").strip()[:128]
        context: dict[str, Any] = {
            "page": "customer",
            "page_title": self._texts.ui_text("customer_360", lang),
            "query": query,
            "charts": False,
        }
        status = 200
        if query:
            found = await run_in_threadpool(self.customer_data, query)
            if found is None:
                context["not_found"] = self._texts.ui_text("not_found", lang, id=query)
                status = 404
            else:
                context["c"] = customer_context(found, self._catalog_tags(), self._texts, lang)
        return self._render(request, "customer.html", context, status=status)

    # ---------------------------------------------------------------------------------- sign-in
    async def login(self, request: Request) -> Response:
        self._ready()
        lang = self._lang(request)
        next_page = request.query_params.get("next") or f"{self.root}/"
        error = None
        status = 200
        if request.method == "POST":
            form = parse_qs((await request.body()).decode("utf-8", "replace"))
            key = (form.get("api_key") or [""])[0].strip()
            next_page = (form.get("next") or [next_page])[0]
            lang = (form.get("lang") or [lang])[0] if (form.get("lang") or [""])[0] in ("en", "zh") else lang
            if not next_page.startswith(f"{self.root}/") or next_page.startswith("//"):
                next_page = f"{self.root}/"  # never redirect off the dashboard
            if key and is_authorized(f"Bearer {key}", self._digests):
                assert self._signer is not None
                response = RedirectResponse(next_page, status_code=303)
                response.set_cookie(
                    COOKIE,
                    self._signer.issue(),
                    max_age=self._signer.seconds,
                    path=self.root,
                    httponly=True,
                    samesite="strict",
                    secure=request.url.scheme == "https",
                )
                return response
            error = self._texts.ui_text("wrong_key", lang)
            status = 401
        return self._render(
            request, "login.html", {"next": next_page, "error": error, "lang": lang}, status=status
        )

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse(f"{self.root}/login", status_code=303)
        response.delete_cookie(COOKIE, path=self.root)
        return response

    # ---------------------------------------------------------------------------------- files
    async def static(self, request: Request) -> Response:
        """CSS, the page script and the plotly.js bundle of the installed plotly package (no data)."""
        name = request.path_params["name"]
        headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
        if name == "plotly.min.js":
            plain, packed = self._plotly_bundle()
            if "gzip" in request.headers.get("accept-encoding", ""):
                return Response(
                    packed,
                    media_type=STATIC_TYPES[".js"],
                    headers={**headers, "Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
                )
            return Response(plain, media_type=STATIC_TYPES[".js"], headers=headers)
        path = HERE / "static" / name
        if path.suffix not in STATIC_TYPES or not path.is_file() or path.parent != HERE / "static":
            return Response("not found", status_code=404)
        return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix], headers=headers)

    def _plotly_bundle(self) -> tuple[bytes, bytes]:
        if self._plotly is None:
            from serving.dashboard.charts import plotly_js_path

            plain = plotly_js_path().read_bytes()
            self._plotly = (plain, gzip.compress(plain, compresslevel=6))
        return self._plotly

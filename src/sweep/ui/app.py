"""`sweep ui`: the Starlette app over one store. Routes only: the data comes from
:mod:`sweep.ui.queries`, the figures from :mod:`sweep.ui.charts`, the pages from the
Jinja2 templates beside this module.

Read-only unless created with a ``write_token``: every write (sweep control, registry
aliases) is a POST whose form carries the token (checked here, server-side) and the
name of the person acting, who lands in the audit log.
"""

from __future__ import annotations

import contextlib
import gc
import mimetypes
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sweep import control
from sweep.errors import NotFoundError, StorageError, SweepError
from sweep.registry import ModelRegistry, acting_user
from sweep.storage import Database, redact
from sweep.tracking import TrackingStore
from sweep.tracking.artifacts import artifact_location
from sweep.ui import charts, importances, queries, status
from sweep.ui.render import dumps_figure, render

#: Environment variable holding the write token (the CLI's --write-token wins).
TOKEN_ENV = "SWEEP_UI_TOKEN"
#: Sweep pages whose figures are kept (see :meth:`UI.figures`).
FIGURE_CACHE = 32
_CONTROLS = {"pause": control.pause, "resume": None, "stop": control.stop, "cancel": control.cancel}


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js as bundled in the installed ``plotly`` package: no CDN, no network."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


class UI:
    """The app's state: the store, the write token, and the page handlers."""

    def __init__(self, db: Database, write_token: str | None) -> None:
        self.db = db
        self.token = write_token or None
        self._figures: dict[tuple[Any, ...], tuple[dict[str, str], str, str]] = {}
        self._lock = threading.Lock()

    # -- helpers ------------------------------------------------------------------------

    def page(self, request: Request, template: str, status: int = 200, **ctx: Any) -> Response:
        html = render(
            template,
            store=self.db.display_url,
            writable=self.token is not None,
            path=request.url.path,
            **ctx,
        )
        return HTMLResponse(html, status_code=status)

    async def authorised(self, request: Request) -> tuple[dict[str, str], str | None]:
        """The POSTed form, and why it is refused (None: the token matches)."""
        # URL-encoded forms only: no multipart parser needed.
        body = (await request.body()).decode("utf-8", "replace")
        form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        if self.token is None:
            return form, "this UI is read-only: start it with --write-token (or SWEEP_UI_TOKEN)"
        if not secrets.compare_digest(form.get("token", "").encode(), self.token.encode()):
            return form, "wrong or missing write token"
        if not form.get("user", "").strip():
            return form, "say who you are (the audit log records it)"
        return form, None

    # -- pages --------------------------------------------------------------------------

    def sweeps(self, request: Request) -> Response:
        lines = status.sweep_lines(self.db)
        live = any(line.state in ("RUNNING", "PAUSED") for line in lines)
        return self.page(request, "sweeps.html", lines=lines, live=live, now_ms=_now_ms())

    def sweep(self, request: Request) -> Response:
        name = request.path_params["name"]
        args = request.query_params
        view = queries.sweep_view(self.db, name)
        figures, x, y = self.figures(view, args.get("x"), args.get("y"))
        order = args.get("order", "")
        filter_ = args.get("filter", "")
        table = queries.trials_page(
            self.db, name, filter=filter_, order_by=order, page=_int(args.get("page"), 1)
        )
        return self.page(
            request,
            "sweep.html",
            view=view,
            figures=figures,
            table=table,
            filter=filter_,
            order=order,
            x=x,
            y=y,
            query=lambda **kw: urlencode({**dict(args), **kw}),
            live=view.status is not None and view.status.state == "RUNNING",
            refresh=15,
            message=args.get("message"),
        )

    def figures(
        self, view: queries.SweepView, x: str | None, y: str | None
    ) -> tuple[dict[str, str], str, str]:
        """The sweep page's figures as JSON. Those drawn from the trials' rows are kept
        until a trial starts or ends; the learning curves (running trials report all
        the time) are drawn afresh."""
        key = (view.name, view.fingerprint, x, y)
        cached = self._figures.get(key)
        if cached is None:
            figures, x_, y_ = charts.sweep_figures(view, x, y)
            figures.pop("curves")
            cached = ({k: dumps_figure(v) for k, v in figures.items()}, x_, y_)
            with self._lock:
                while len(self._figures) >= FIGURE_CACHE:
                    self._figures.pop(next(iter(self._figures)))
                self._figures[key] = cached
        curves = dumps_figure(charts.learning_curves(view.rows, view.curves))
        return {**cached[0], "curves": curves}, cached[1], cached[2]

    def importances(self, request: Request) -> Response:
        """The importances figure as far as it is known, at once: 202 while none are
        (the page shows a placeholder and asks again), ``pending`` while newer ones are
        worked out in the background (see :mod:`sweep.ui.importances`)."""
        known = importances.lookup(self.db, request.path_params["name"])
        if known is None:
            return JSONResponse({"pending": True}, status_code=202)
        figure: dict[str, Any] = (
            charts.importances(known.values, known.complete)
            if known.values
            else {"data": [], "layout": {}}
        )
        return JSONResponse({**figure, "pending": not known.current})

    def run(self, request: Request) -> Response:
        view = queries.run_view(self.db, request.path_params["run_id"])
        figures = {
            s.key: dumps_figure(charts.metric(s.key, s.steps, s.values, s.low, s.high))
            for s in view.series
        }
        logs = _logs(view)
        return self.page(request, "run.html", view=view, figures=figures, logs=logs)

    def artifact(self, request: Request) -> Response:
        run_id, path = request.path_params["run_id"], request.path_params["path"]
        tracking = TrackingStore(self.db)
        run = tracking.get_run(run_id)
        if path not in {a.path for a in tracking.list_artifacts(run_id) if a.kind == "file"}:
            raise NotFoundError(f"run {run_id} has no file artifact {path!r}")
        data = _read(artifact_location(run.artifact_uri, path))
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        name = path.rsplit("/", 1)[-1].replace('"', "").replace("\\", "")
        return Response(
            data, media_type=kind, headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    def compare(self, request: Request) -> Response:
        run_ids = [r for r in request.query_params.getlist("run") if r][:10]
        if len(run_ids) < 2:
            raise SweepError("select at least two runs to compare (tick them in a trials table)")
        runs, series = queries.compare_runs(self.db, run_ids)
        keys = sorted({s.key.split("|")[0] for s in series})
        names = {r.run_id: f"{r.name}" for r in runs}
        figures = {
            key: dumps_figure(
                charts.overlay(
                    key,
                    [
                        (names[s.key.split("|")[1]], s.steps, s.values)
                        for s in series
                        if s.key.split("|")[0] == key
                    ],
                )
            )
            for key in keys
        }
        param_keys = sorted({k for r in runs for k in r.params})
        differ = {k for k in param_keys if len({r.params.get(k) for r in runs}) > 1}
        return self.page(
            request,
            "compare.html",
            runs=runs,
            figures=figures,
            param_keys=param_keys,
            differ=differ,
        )

    def models(self, request: Request) -> Response:
        views = queries.model_views(self.db)
        message = request.query_params.get("message")
        return self.page(request, "models.html", models=views, message=message)

    # -- writes -------------------------------------------------------------------------

    async def control(self, request: Request) -> Response:
        name = request.path_params["name"]
        form, refused = await self.authorised(request)
        if refused is not None:
            return self.page(request, "error.html", 403, title="Refused", message=refused)
        action = form.get("action", "")
        if action not in _CONTROLS:
            raise NotFoundError(f"no control action {action!r}; use pause, resume, stop or cancel")
        await run_in_threadpool(self._control, name, action, form)
        message = f"{action} requested by {_actor(form)}"
        return RedirectResponse(f"/sweeps/{name}?{urlencode({'message': message})}", 303)

    def _control(self, name: str, action: str, form: dict[str, str]) -> None:
        if action == "resume":
            control.unpause(name, db=self.db)
        else:
            _CONTROLS[action](name, storage=self.db.url)  # type: ignore[misc]
        control.audit(self.db, name, action, _actor(form), form.get("reason") or None)

    async def registry(self, request: Request) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        form, refused = await self.authorised(request)
        if refused is not None:
            return self.page(request, "error.html", 403, title="Refused", message=refused)
        message = await run_in_threadpool(self._registry, name, action, form)
        return RedirectResponse(f"/models?{urlencode({'message': message})}#model-{name}", 303)

    def _registry(self, name: str, action: str, form: dict[str, str]) -> str:
        registry = ModelRegistry(self.db)
        reason = form.get("reason") or None
        token = acting_user.set(_actor(form))
        try:
            if action == "promote":
                version = registry.promote(name, reason=reason)
                return f"version {version.version} of {name} is @champion"
            if action == "rollback":
                version = registry.rollback(name, reason=reason)
                return f"version {version.version} of {name} is @champion again"
            if action == "alias":
                alias, number = form.get("alias", ""), _int(form.get("version"), 0)
                registry.set_alias(name, alias, number, reason=reason)
                return f"@{alias} of {name} now points at version {number}"
            raise NotFoundError(f"no registry action {action!r}; use promote, rollback or alias")
        finally:
            acting_user.reset(token)

    def static_plotly(self, _request: Request) -> Response:
        return Response(
            plotly_js(),
            media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )


def _actor(form: dict[str, str]) -> str:
    return f"{form.get('user', '').strip()[:200]} (sweep ui)"


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _now_ms() -> int:
    return int(time.time() * 1000)


def _read(location: str) -> bytes:
    import fsspec

    with fsspec.open(location, "rb") as handle:
        return handle.read()


#: Bytes of a text artifact shown inline as a log.
LOG_BYTES = 20_000


def _logs(view: queries.RunView) -> dict[str, str]:
    """The run's text artifacts (tracebacks, logs), their first ``LOG_BYTES`` each."""
    out = {}
    for artifact in view.artifacts:
        if artifact.kind == "file" and artifact.path.endswith((".txt", ".log")):
            try:
                data = _read(artifact_location(view.run.artifact_uri, artifact.path))
            except OSError as exc:
                out[artifact.path] = f"(unreadable: {exc})"
                continue
            out[artifact.path] = redact(data[:LOG_BYTES].decode("utf-8", "replace"))
    return out


def _warm_up(db: Database) -> None:
    """What every process pays once, paid before the server listens rather than by the
    first page: Optuna's storage opened (it checks its schema in several queries),
    SQLAlchemy's mappers configured, the templates compiled, the objects made so far
    frozen out of the cyclic garbage collector's passes."""
    from sqlalchemy.orm import configure_mappers

    from sweep.ui.render import TEMPLATES, environment

    with contextlib.suppress(SweepError):  # a store that fails shows on the pages
        status.optuna_storage(db)
    configure_mappers()
    for template in TEMPLATES.glob("*.html"):
        environment().get_template(template.name)
    # What exists now (modules, tables, templates) lives as long as the server: the
    # cyclic collector need not walk it again. Its first full pass over them, set off by
    # the 10,000 rows of a cold sweep page, took 100-200 ms of that page.
    gc.collect()
    gc.freeze()


def _guarded(ui: UI, handler: Callable[..., Any]) -> Callable[..., Any]:
    """``handler`` with sweep's errors shown as a page: 404 for what does not exist, 503
    when the store fails, 400 for anything else the user can fix."""
    import inspect

    def fail(request: Request, exc: SweepError) -> Response:
        status = (
            404 if isinstance(exc, NotFoundError) else 503 if isinstance(exc, StorageError) else 400
        )
        title = {404: "Not found", 503: "Store unavailable", 400: "Cannot do that"}[status]
        return ui.page(request, "error.html", status, title=title, message=redact(str(exc)))

    if inspect.iscoroutinefunction(handler):

        async def run_async(request: Request) -> Response:
            try:
                return await handler(request)
            except SweepError as exc:
                return fail(request, exc)

        return run_async

    def run_sync(request: Request) -> Response:
        try:
            return handler(request)
        except SweepError as exc:
            return fail(request, exc)

    return run_sync


def create_app(storage: str | None = None, *, write_token: str | None = None) -> Starlette:
    """The UI over the store at ``storage`` (default: as the CLI resolves it)."""
    from sweep.storage import resolve_storage_url

    db = Database(resolve_storage_url(storage))
    db.ensure_schema()
    ui = UI(db, write_token)
    routes = [
        Route("/", _guarded(ui, ui.sweeps)),
        Route("/sweeps/{name}", _guarded(ui, ui.sweep)),
        Route("/sweeps/{name}/importances", _guarded(ui, ui.importances)),
        Route("/sweeps/{name}/control", _guarded(ui, ui.control), methods=["POST"]),
        Route("/runs/{run_id}", _guarded(ui, ui.run)),
        Route("/runs/{run_id}/artifacts/{path:path}", _guarded(ui, ui.artifact)),
        Route("/compare", _guarded(ui, ui.compare)),
        Route("/models", _guarded(ui, ui.models)),
        Route("/models/{name}/{action}", _guarded(ui, ui.registry), methods=["POST"]),
        Route("/static/plotly.min.js", ui.static_plotly),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(_warm_up, db)
        yield
        importances.shutdown()
        db.dispose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.ui = ui
    return app

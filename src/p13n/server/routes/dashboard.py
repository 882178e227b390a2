"""The dashboard: server-rendered pages (Jinja2, autoescaped, no JavaScript) over one tenant's
data: users and everything stored about each, a playground that answers with and without
personalization side by side, and the benchmark reports under ``reports_dir``.

Every page but the login form needs a tenant key: the ``p13n_key`` cookie the login form sets
(HttpOnly, SameSite=Strict) or an ``Authorization: Bearer`` header; without one it redirects to
the login form."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from p13n.errors import LLMError, P13nError, QueueFullError, RateLimitedError, UnknownUserError
from p13n.personalize import Generation, PersonalizerConfig
from p13n.prompt import builders, templates
from p13n.retrieve import retrievers
from p13n.server.auth import COOKIE, TenantScope, get_state
from p13n.server.pages import (
    STATIC,
    base_url,
    bounded_int,
    not_found,
    page_scope,
    render,
    to_login,
)
from p13n.server.reports import (
    REPORT_FILES,
    find_reports,
    markdown_html,
    read_report,
    report_file,
    report_folder,
    reports_root,
)
from p13n.store import StoredAdapter, UserSummary

PAGE_SIZE = 25
LIST_LIMIT = 50
"""Documents, interactions and preferences shown on a user's page (newest first)."""
PLAYGROUND_TOKENS = 48
PLAYGROUND_MAX_TOKENS = 128
PLAYGROUND_MAX_INPUT = 4000
LEVELS = ("user", "auto", "persona", "global")

router = APIRouter(prefix="/dashboard", include_in_schema=False)


# ------------------------------------------------------------------------------- login
@router.get("/static/{name}", name="dashboard_static")
def static(name: str) -> Response:
    """The stylesheet (no login needed; only files that ship in ``static/``)."""
    files = {path.name: path for path in STATIC.iterdir() if path.is_file()}
    if name not in files:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(files[name], headers={"Cache-Control": "max-age=3600"})


@router.get("/login", name="dashboard_login")
def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", None, error=None)


LOGIN_ATTEMPTS_PER_MINUTE = 20
"""Per client address, right or wrong, through the server's rate limiter (shared by processes
when it is on Redis): guessing keys from one address gets 20 tries a minute."""


@router.post("/login")
async def login(request: Request) -> Response:
    """Checks a tenant key and keeps it in an HttpOnly, SameSite=Strict cookie."""
    state = get_state(request)
    address = request.client.host if request.client is not None else "unknown"
    try:
        await run_in_threadpool(
            state.limiter.take, f"dashboard-login:{address}", LOGIN_ATTEMPTS_PER_MINUTE
        )
    except RateLimitedError as limited:
        page = render(
            request,
            "login.html",
            None,
            status=429,
            error=f"Too many login attempts from here; try again in {limited.retry_after} s.",
        )
        page.headers["Retry-After"] = str(limited.retry_after)
        return page
    form = await request.form()
    key = form.get("key")
    key = key.strip() if isinstance(key, str) else ""
    record = await run_in_threadpool(state.tenants.authenticate, key) if key else None
    if record is None:
        error = "That is not a live tenant API key." if key else "Enter a tenant API key."
        return render(request, "login.html", None, status=401, error=error)
    response = RedirectResponse(base_url(request), status_code=303)
    response.set_cookie(
        COOKIE,
        key,
        path=base_url(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/logout", name="dashboard_logout")
def logout(request: Request) -> Response:
    response = to_login(request)
    response.delete_cookie(COOKIE, path=base_url(request), httponly=True, samesite="strict")
    return response


# ------------------------------------------------------------------------------- users
@router.get("", name="dashboard_users")
def users(request: Request) -> Response:
    """The tenant's users with their counts, a page at a time; ``q`` filters by id prefix."""
    scope = page_scope(request)
    if scope is None:
        return to_login(request)
    store = scope.store
    query = request.query_params.get("q", "").strip()[:200]
    page = bounded_int(request.query_params.get("page"), 1, 1, 1_000_000)
    offset = (page - 1) * PAGE_SIZE
    if query:
        # The store pages users by id without a filter; a prefix search reads the list once.
        matching = [u for u in store.all_users() if u.id.startswith(query)]
        total = len(matching)
        summaries = [
            UserSummary(user, store.user_counts(user.id))
            for user in matching[offset : offset + PAGE_SIZE]
        ]
    else:
        total = store.count_users()
        summaries = store.list_users(limit=PAGE_SIZE, offset=offset)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    return render(
        request,
        "users.html",
        scope,
        users=summaries,
        total=total,
        query=query,
        page_number=page,
        pages=pages,
    )


@dataclass(frozen=True)
class AdapterRow:
    entry: StoredAdapter
    owner: str
    """``user`` or ``persona <id>``."""


@router.get("/users/{user_id:path}", name="dashboard_user")
def user_page(request: Request, user_id: str) -> Response:
    """Everything stored about one user of the tenant."""
    scope = page_scope(request)
    if scope is None:
        return to_login(request)
    store = scope.store
    user = store.get_user(user_id)
    if user is None:
        return not_found(request, scope, f"user {user_id!r}")
    interactions = store.interactions(user_id, limit=LIST_LIMIT)
    items = store.items(sorted({i.item_id for i in interactions}))
    persona_ids = store.personas_of(user_id)
    personas = {p.id: p for p in store.personas()}
    adapters = [AdapterRow(a, "user") for a in store.adapters(user_id=user_id)]
    for persona_id in persona_ids:
        adapters += [
            AdapterRow(a, f"persona {persona_id}") for a in store.adapters(persona_id=persona_id)
        ]
    return render(
        request,
        "user.html",
        scope,
        user=user,
        counts=store.user_counts(user_id),
        documents=store.documents(user_id, limit=LIST_LIMIT),
        interactions=interactions,
        titles={item.id: item.title for item in items},
        preferences=store.preferences(user_id)[:LIST_LIMIT],
        personas=[
            (pid, personas[pid].description if pid in personas else "") for pid in persona_ids
        ],
        adapters=adapters,
        limit=LIST_LIMIT,
    )


# ------------------------------------------------------------------------------- playground
@dataclass(frozen=True)
class PlaygroundForm:
    """The playground's fields, clamped to what the page allows."""

    user: str = ""
    input: str = ""
    task: str = "chat"
    retriever: str = "bm25"
    k: int = 4
    prompt: str = "contextual"
    level: str = "user"
    max_tokens: int = PLAYGROUND_TOKENS

    @classmethod
    def defaults(cls, config: PersonalizerConfig, user: str = "") -> PlaygroundForm:
        return cls(
            user=user[:200],
            task=config.task,
            retriever=config.retriever.name,
            k=config.retriever.k,
            prompt=config.prompt,
            level=config.granularity.level,
        )

    @classmethod
    def parse(cls, form: Mapping[str, Any], defaults: PlaygroundForm, cap: int) -> PlaygroundForm:
        def text(name: str, fallback: str, limit: int = 200) -> str:
            value = form.get(name)
            return value.strip()[:limit] if isinstance(value, str) else fallback

        return cls(
            user=text("user", ""),
            input=text("input", "", PLAYGROUND_MAX_INPUT),
            task=text("task", defaults.task),
            retriever=text("retriever", defaults.retriever),
            k=bounded_int(form.get("k"), defaults.k, 0, 20),
            prompt=text("prompt", defaults.prompt),
            level=text("level", defaults.level),
            max_tokens=bounded_int(form.get("max_tokens"), PLAYGROUND_TOKENS, 1, cap),
        )

    def config(self, base: PersonalizerConfig) -> PersonalizerConfig:
        """``base`` with this form's choices, validated (unknown names are refused there)."""
        values = base.model_dump()
        values.update(task=self.task, prompt=self.prompt)
        values["retriever"] = {**values["retriever"], "name": self.retriever, "k": self.k}
        values["generation"] = {**values["generation"], "max_new_tokens": self.max_tokens}
        values["granularity"] = {**values["granularity"], "level": self.level}
        return PersonalizerConfig.model_validate(values)


def _token_cap(scope: TenantScope) -> int:
    return min(PLAYGROUND_MAX_TOKENS, scope.state.config.max_new_tokens)


def _playground(
    request: Request,
    scope: TenantScope,
    form: PlaygroundForm,
    *,
    status: int = 200,
    error: str | None = None,
    result: tuple[Generation, Generation] | None = None,
) -> HTMLResponse:
    users = scope.store.list_users(limit=200)
    return render(
        request,
        "playground.html",
        scope,
        status=status,
        form=form,
        error=error,
        result=result,
        user_ids=[s.user.id for s in users],
        tasks=templates.names(),
        retrievers=retrievers.names(),
        prompts=[name for name in builders.names() if name != "none"],
        levels=LEVELS,
        token_cap=_token_cap(scope),
    )


@router.get("/playground", name="dashboard_playground")
def playground_form(request: Request) -> Response:
    scope = page_scope(request)
    if scope is None:
        return to_login(request)
    defaults = PlaygroundForm.defaults(
        scope.state.config.defaults, request.query_params.get("user", "")
    )
    return _playground(request, scope, defaults)


@router.post("/playground")
async def playground(request: Request) -> Response:
    """The same input answered without and with the user's data, side by side, with what was
    retrieved, the level that served and the timings. Runs on the shared model's queue."""
    scope = await run_in_threadpool(page_scope, request)  # key lookups read the store
    if scope is None:
        return to_login(request)
    state = scope.state
    defaults = PlaygroundForm.defaults(state.config.defaults)
    form = PlaygroundForm.parse(await request.form(), defaults, _token_cap(scope))
    if not form.user or not form.input:
        return _playground(request, scope, form, status=400, error="Give a user and an input.")
    try:
        config = form.config(state.config.defaults)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return _playground(request, scope, form, status=400, error=problems)
    unknown = await run_in_threadpool(scope.store.data_version, form.user) is None
    if unknown and not config.granularity.routes:  # refused before the model is loaded
        return _playground(request, scope, form, status=404, error=f"No user {form.user!r}.")
    try:
        async with state.gate.slot():
            personalizer = await run_in_threadpool(state.personalizer, scope.tenant, config)
            result = await run_in_threadpool(personalizer.compare, form.user, form.input)
    except UnknownUserError:
        return _playground(request, scope, form, status=404, error=f"No user {form.user!r}.")
    except P13nError as error:  # a full queue, a model failure, a configuration refused
        return _playground(request, scope, form, status=_status(error), error=str(error))
    return _playground(request, scope, form, result=result)


def _status(error: P13nError) -> int:
    if isinstance(error, QueueFullError):
        return 503
    if isinstance(error, RateLimitedError):
        return 429
    if isinstance(error, LLMError):
        return 502
    return 400


# ------------------------------------------------------------------------------- reports
@router.get("/reports", name="dashboard_reports")
def reports(request: Request) -> Response:
    scope = page_scope(request)
    if scope is None:
        return to_login(request)
    root = reports_root(scope)
    return render(request, "reports.html", scope, reports=find_reports(root), root=str(root))


@router.get("/reports/{name}", name="dashboard_report")
def report(request: Request, name: str) -> Response:
    """A run's summary.md as HTML (tables included; raw HTML in it is escaped) with its plots."""
    scope = page_scope(request)
    if scope is None:
        return to_login(request)
    folder = report_folder(reports_root(scope), name)
    if folder is None:
        return not_found(request, scope, f"report {name!r}")
    found = read_report(folder)
    summary = folder / "summary.md"
    body = markdown_html(summary.read_text(encoding="utf-8")) if summary.is_file() else None
    return render(request, "report.html", scope, report=found, summary=body)


@router.get("/reports/{name}/files/{relative:path}", name="dashboard_report_file")
def report_file_route(request: Request, name: str, relative: str) -> Response:
    """A plot or data file of a run, only from inside ``reports_dir``."""
    scope = page_scope(request)
    if scope is None:
        return to_login(request)
    path = report_file(reports_root(scope), name, relative)
    if path is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(
        path,
        media_type=REPORT_FILES[path.suffix.lower()],
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )

"""How the dashboard renders its pages: Jinja2 templates (autoescaped, strict about undefined
names) in the layout, the filters they use, and the headers every page is sent with."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from p13n.server.auth import TenantScope, tenant_scope

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEXT_CHARS = 400
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_jinja = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def base_url(request: Request) -> str:
    """The dashboard's URL path, wherever the app is mounted."""
    root: str = request.scope.get("root_path", "")
    return f"{root}/dashboard"


def page_scope(request: Request) -> TenantScope | None:
    """The tenant the request's key (cookie or bearer) belongs to; None without a valid one."""
    try:
        return tenant_scope(request, cookie=True)
    except HTTPException:
        return None


def to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{base_url(request)}/login", status_code=303)


def render(
    request: Request,
    template: str,
    scope: TenantScope | None,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page of the layout: the template rendered with the base URL, tenant and page name."""
    html = _jinja.get_template(template).render(
        base=base_url(request),
        tenant=scope.tenant if scope is not None else None,
        page=template.removesuffix(".html"),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def not_found(request: Request, scope: TenantScope, what: str) -> HTMLResponse:
    return render(request, "not_found.html", scope, status=404, what=what)


def _clip(text: str, limit: int = TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M")


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def bounded_int(raw: object, default: int, low: int, high: int) -> int:
    """``raw`` as an integer clamped to ``[low, high]``; ``default`` when it is none."""
    try:
        number = int(str(raw))
    except ValueError:
        return default
    return max(low, min(high, number))


_jinja.filters.update(clip=_clip, when=_when, size=_size, value=_value)

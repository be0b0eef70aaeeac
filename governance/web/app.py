"""The risk page's Starlette application: its routes, templates and the one error mapping.

A page's errors are the store's own (``governance.errors``, ``security.errors``) carrying a
gRPC status; ``access.HTTP_STATUS`` gives the HTTP one, and the error page says what to fix.
Anything else is logged and answered 500 with a generic message.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from governance.errors import LineageError
from governance.status import INTERNAL_MESSAGE, to_status
from governance.web import charts
from governance.web.access import HTTP_STATUS, PageAccess
from governance.web.routes import Pages
from governance.web.views import PageQueries, Timeline
from security.errors import SecurityError

log = logging.getLogger(__name__)


def when(us: int | None) -> str:
    if not us:
        return "-"
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def share(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1%}"


def number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("governance.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(when=when, share=share, number=number)
    env.globals.update(
        psi_chart=charts.psi_over_time,
        distribution_chart=charts.distribution,
        serving_chart=serving_chart,
    )
    return Jinja2Templates(env=env)


def serving_chart(timeline: Timeline) -> Markup:
    rows = [
        (f"{model} v{p.model_version} {p.arm}", p.started_us, p.stopped_us, p.weight)
        for model, p in timeline.periods
    ]
    return charts.serving_bars(rows, timeline.start_us, timeline.end_us)


def build_app(queries: PageQueries, access: PageAccess) -> Starlette:
    views = templates()
    pages = Pages(queries, access, views)

    async def refused(request: Request, exc: Exception) -> Response:
        code, message = to_status(exc)
        status = HTTP_STATUS.get(code, 500)
        if status == 500:
            log.error("risk page %s failed", request.url.path, exc_info=exc)
            message = INTERNAL_MESSAGE
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return views.TemplateResponse(
            request,
            "error.html",
            {"status": status, "message": message, "principal": ""},
            status_code=status,
            headers=headers,
        )

    return Starlette(
        routes=[
            Route("/", pages.search),
            Route("/decisions/{decision_id}", pages.decision),
            Route("/decisions/{decision_id}/replay", pages.replay, methods=["POST"]),
            Route("/timeline", pages.timeline),
            Route("/drift", pages.drift),
        ],
        exception_handlers={
            LineageError: refused,
            SecurityError: refused,
            Exception: refused,
        },
    )

"""The pages: each request converted to a page query at the edge and its answer rendered.

Each page stands for a LineageService method and needs what that method needs (``PageView``):
the search is ListDecisions (``read_decisions``, and ``read_features`` to search by entity
key), a decision page GetDecision (inputs and the entity key only with ``read_features``;
without it the page shows the decision without them), the replay re-scores stored inputs
(``read_decisions`` and ``read_features``), the timeline GetModelHistory and the drift view
GetDrift (``read_decisions``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from governance.ids import canonical_decision_id
from governance.store.clock import now_us
from governance.web.access import PageAccess, PageView, logged_query
from governance.web.params import BadParameter, period, search_params
from governance.web.views import PageQueries
from runtimes.manifest import ManifestError
from security.policy_schema import LineagePermission as P

DAY_US = 86_400_000_000
TIMELINE_DAYS = 30
DRIFT_DAYS = 7
_POINT = ("decision_point",)


def _only(params: dict[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise BadParameter(f"{unknown[0]}: not a parameter of this page")


class Pages:
    def __init__(self, queries: PageQueries, access: PageAccess, views: Jinja2Templates) -> None:
        self._queries = queries
        self._access = access
        self._views = views

    def _render(self, request: Request, view: PageView, name: str, **context: Any) -> Response:
        return self._views.TemplateResponse(
            request,
            name,
            {
                "principal": view.principal.id,
                "sees_personal": view.may(P.READ_FEATURES),
                **context,
            },
        )

    async def search(self, request: Request) -> Response:
        async with self._access.view(request, "search") as view:
            params = dict(request.query_params)
            view.query = logged_query(params, self._access.pseudonyms)
            found = search_params(params, now_us())
            view.require(P.READ_DECISIONS, *((P.READ_FEATURES,) if found.entity_key else ()))
            if found.decision_id:
                view.decision_ids = (found.decision_id,)
                return RedirectResponse(f"/decisions/{found.decision_id}", status_code=303)
            page = None if found.empty else await self._queries.search(found)
            points = await self._queries.decision_points()
            return self._render(request, view, "search.html", form=params, page=page, points=points)

    async def decision(self, request: Request) -> Response:
        async with self._access.view(request, "decision") as view:
            decision_id = canonical_decision_id(request.path_params["decision_id"])
            view.decision_ids = (decision_id,)
            view.require(P.READ_DECISIONS)
            _only(dict(request.query_params), ())
            page = await self._queries.decision(decision_id)
            return self._render(
                request,
                view,
                "decision.html",
                page=page,
                record=page.stored.record,
                replay_available=self._queries.replay_available,
                replayed=None,
                replay_problem="",
            )

    async def replay(self, request: Request) -> Response:
        async with self._access.view(request, "replay") as view:
            decision_id = canonical_decision_id(request.path_params["decision_id"])
            view.decision_ids = (decision_id,)
            view.require(P.READ_DECISIONS, P.READ_FEATURES)
            replayed, problem = None, ""
            try:
                replayed = await self._queries.replay(decision_id)
            except ManifestError as e:
                problem = str(e)
            page = await self._queries.decision(decision_id)
            return self._render(
                request,
                view,
                "decision.html",
                page=page,
                record=page.stored.record,
                replay_available=self._queries.replay_available,
                replayed=replayed,
                replay_problem=problem,
            )

    async def timeline(self, request: Request) -> Response:
        async with self._access.view(request, "timeline") as view:
            params = dict(request.query_params)
            view.query = logged_query(params, None)
            view.require(P.READ_DECISIONS)
            _only(params, (*_POINT, "since", "until"))
            now = now_us()
            since, until = period(params, now, now - TIMELINE_DAYS * DAY_US)
            point = params.get("decision_point", "").strip()
            points = await self._queries.decision_points()
            timeline = await self._queries.timeline(point, since, until) if point else None
            return self._render(
                request, view, "timeline.html", form=params, points=points, timeline=timeline
            )

    async def drift(self, request: Request) -> Response:
        async with self._access.view(request, "drift") as view:
            params = dict(request.query_params)
            view.query = logged_query(params, None)
            view.require(P.READ_DECISIONS)
            _only(params, (*_POINT, "since", "until", "step_hours", "bad"))
            now = now_us()
            since, until = period(params, now, now - DRIFT_DAYS * DAY_US)
            step_text = params.get("step_hours", "").strip() or "24"
            if not step_text.isdigit() or not 1 <= int(step_text) <= 24 * 31:
                raise BadParameter("step_hours: a whole number of hours from 1 to 744")
            bad = [b.strip() for b in params.get("bad", "").split(",") if b.strip()]
            point = params.get("decision_point", "").strip()
            points = await self._queries.decision_points()
            drift = (
                await self._queries.drift(point, since, until, int(step_text), bad)
                if point
                else None
            )
            return self._render(
                request, view, "drift.html", form=params, points=points, drift=drift
            )

"""The pages' query parameters, checked: a bad one is a 400 naming the parameter.

Times are ISO 8601 (``2026-12-01``, ``2026-12-01T14:03``, with or without an offset; without
one they are UTC), as an HTML date-time field sends them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from governance.errors import InvalidRequest
from governance.ids import canonical_decision_id
from governance.queries import END_OF_TIME_US, parse_page_token

PAGE_ROWS = 50
MAX_PAGE_ROWS = 200
DAY_US = 86_400_000_000

SEARCH_FIELDS = (
    "decision_id",
    "request_id",
    "entity_key",
    "decision_point",
    "model_name",
    "model_version",
    "decision",
    "reason_code",
    "reason_any_rank",
    "since",
    "until",
    "limit",
    "page",
)


class BadParameter(InvalidRequest):
    """A query parameter the page cannot use; the message starts with its name."""


def parse_time(name: str, text: str) -> int:
    """Microseconds since the epoch; BadParameter naming ``name``."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadParameter(
            f"{name}: {text!r} is not an ISO 8601 date or time (e.g. 2026-12-01T14:03)"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1_000_000)


def _text(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if len(value) > 512:
        raise BadParameter(f"{name}: longer than 512 characters")
    return value


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = _text(params, name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadParameter(f"{name}: {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise BadParameter(f"{name}: must be between {low} and {high}")
    return value


def period(params: Mapping[str, str], now_us: int, default_since_us: int) -> tuple[int, int]:
    """[since, until) from ``since`` and ``until``; until defaults to now."""
    since_text, until_text = _text(params, "since"), _text(params, "until")
    since = parse_time("since", since_text) if since_text else default_since_us
    until = parse_time("until", until_text) if until_text else now_us
    if until <= since:
        raise BadParameter("until: must be later than since")
    return since, until


@dataclass(frozen=True, slots=True)
class SearchParams:
    decision_id: str = ""
    request_id: str = ""
    entity_key: str = ""
    decision_point: str = ""
    model_name: str = ""
    model_version: str = ""
    decision: str = ""
    reason_code: str = ""
    reason_any_rank: bool = False
    since_us: int = 0
    until_us: int = END_OF_TIME_US
    limit: int = PAGE_ROWS
    after: tuple[int, str] | None = None
    """The keyset position the page continues from (``page``: the previous page's last row)."""

    @property
    def empty(self) -> bool:
        return not any(
            (
                self.decision_id,
                self.request_id,
                self.entity_key,
                self.decision_point,
                self.model_name,
                self.reason_code,
            )
        )


def search_params(params: Mapping[str, str], now_us: int) -> SearchParams:
    """The search form's parameters. Every listing reads an index: it needs an entity key, a
    decision point, a model or a reason code (a request id or a decision alone would not)."""
    unknown = sorted(set(params) - set(SEARCH_FIELDS))
    if unknown:
        raise BadParameter(f"{unknown[0]}: not a search parameter")
    text = {name: _text(params, name) for name in SEARCH_FIELDS}
    decision_id = canonical_decision_id(text["decision_id"]) if text["decision_id"] else ""
    since, until = (0, END_OF_TIME_US)
    if text["since"] or text["until"]:
        since, until = period(params, END_OF_TIME_US, 0)
    found = SearchParams(
        decision_id=decision_id,
        request_id=text["request_id"],
        entity_key=text["entity_key"],
        decision_point=text["decision_point"],
        model_name=text["model_name"],
        model_version=text["model_version"],
        decision=text["decision"],
        reason_code=text["reason_code"],
        reason_any_rank=text["reason_any_rank"] in ("1", "on", "true"),
        since_us=since,
        until_us=until,
        limit=_int(params, "limit", PAGE_ROWS, 1, MAX_PAGE_ROWS),
        after=_page(text["page"]),
    )
    if found.model_version and not found.model_name:
        raise BadParameter("model_version: needs model_name")
    if found.reason_any_rank and not found.reason_code:
        raise BadParameter("reason_any_rank: needs reason_code")
    indexed = found.entity_key or found.decision_point or found.model_name or found.reason_code
    if not decision_id and not indexed and (found.request_id or found.decision):
        name = "request_id" if found.request_id else "decision"
        raise BadParameter(
            f"{name}: add an entity key, a decision point, a model or a reason code to search by"
        )
    return found


def _page(token: str) -> tuple[int, str] | None:
    try:
        return parse_page_token(token)
    except InvalidRequest:
        raise BadParameter(f"page: {token!r} is not a page this store gave") from None

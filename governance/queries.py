"""Answers to lineage questions and the facts recorded later, transport-free.

The LineageService servicer converts messages to these calls and back; everything here checks its
inputs and raises the errors of ``governance.errors`` naming the offending field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pydantic

from governance.chain import Checkpoint
from governance.errors import DecisionNotFound, InvalidRequest, ModelNotFound
from governance.ids import canonical_decision_id
from governance.pseudonyms import EntityPseudonyms
from governance.store import LineageStore, StoredDecision
from governance.store.base import TrafficSeen
from governance.store.entries import (
    AccessFilter,
    AccessPage,
    ArmTarget,
    Count,
    DecisionFilter,
    DecisionPage,
    DecisionSummary,
    Outcome,
    Override,
    RegisteredManifest,
    RouteChange,
    canonical,
)
from governance.store.sql import now_us
from runtimes.manifest import Manifest

MAX_LIST = 10_000
DEFAULT_LIST = 100
DEFAULT_WINDOW_S = 60
DEFAULT_NEAREST = 20
END_OF_TIME_US = 2**62


@dataclass(slots=True)
class ServingAt:
    """What served a decision point at ``at_us``, and the decisions made around it."""

    at_us: int
    in_force: RouteChange | None
    targets: list[ArmTarget]
    page: DecisionPage
    window_start_us: int
    window_end_us: int


@dataclass(frozen=True, slots=True)
class RoutedPeriod:
    decision_point: str
    model_version: str
    arm: str
    started_us: int
    stopped_us: int | None
    weight: float
    started_by: str
    stopped_by: str = ""


@dataclass(slots=True)
class ModelHistory:
    routed: list[RoutedPeriod] = field(default_factory=list)
    observed: list[TrafficSeen] = field(default_factory=list)


def _required(value: str, name: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidRequest(f"{name} is required")
    return text


def _derived_id(prefix: str, body: dict[str, Any]) -> str:
    return f"{prefix}-{hashlib.sha256(canonical(body)).hexdigest()[:32]}"


def merge_pages(pages: Sequence[DecisionPage], limit: int) -> DecisionPage:
    """One page from pages of the same selection under different entity-key forms, each from
    the same position: the earliest ``limit`` of them all, counts summed. The page token is
    a position in (decided_at, decision_id), so the next page continues every form at once."""
    merged = sorted(
        (d for p in pages for d in p.decisions), key=lambda d: (d.decided_at_us, d.decision_id)
    )
    counts: dict[tuple[str, str, str, str], int] = {}
    for page in pages:
        for c in page.counts:
            key = (c.model_name, c.model_version, c.arm, c.decision)
            counts[key] = counts.get(key, 0) + c.count
    more = len(merged) > limit or any(p.next_page_token for p in pages)
    shown = merged[:limit]
    token = f"{shown[-1].decided_at_us}/{shown[-1].decision_id}" if more and shown else ""
    return DecisionPage(shown, [Count(*k, n) for k, n in sorted(counts.items())], token)


def parse_page_token(token: str) -> tuple[int, str] | None:
    if not token:
        return None
    at, _, decision_id = token.partition("/")
    try:
        return int(at), canonical_decision_id(decision_id)
    except (ValueError, InvalidRequest):
        raise InvalidRequest(f"page_token {token!r} is not one this store issued") from None


def routed_periods(
    changes: list[RouteChange], model_name: str, decision_point: str = ""
) -> list[RoutedPeriod]:
    """Periods during which each (point, version, arm) of a model had a weight above zero."""
    open_: dict[tuple[str, str, str], RoutedPeriod] = {}
    done: list[RoutedPeriod] = []
    for change in changes:
        current = {
            (t.decision_point, t.model_version, t.arm): t.weight
            for t in change.targets
            if t.model_name == model_name
            and t.weight > 0
            and (not decision_point or t.decision_point == decision_point)
        }
        for key in [k for k in open_ if k not in current]:
            period = open_.pop(key)
            done.append(
                RoutedPeriod(
                    *key,
                    started_us=period.started_us,
                    stopped_us=change.changed_at_us,
                    weight=period.weight,
                    started_by=period.started_by,
                    stopped_by=change.config_version,
                )
            )
        for key, weight in current.items():
            if key not in open_:
                open_[key] = RoutedPeriod(
                    *key, change.changed_at_us, None, weight, change.config_version
                )
    return sorted([*done, *open_.values()], key=lambda p: (p.started_us, p.decision_point, p.arm))


class LineageQueries:
    def __init__(self, store: LineageStore, pseudonyms: EntityPseudonyms | None = None) -> None:
        self._store = store
        self._pseudonyms = pseudonyms or EntityPseudonyms()

    async def get_decision(self, decision_id: str) -> StoredDecision:
        """The stored decision; InvalidDecisionId or DecisionNotFound otherwise."""
        canonical_id = canonical_decision_id(decision_id)
        stored = await self._store.get(canonical_id)
        if stored is None:
            raise DecisionNotFound(f"no decision with id {canonical_id} in the lineage store")
        return stored

    async def list_decisions(
        self, selection: DecisionFilter, limit: int = 0, page_token: str = ""
    ) -> DecisionPage:
        if selection.entity_key and selection.model_name:
            raise InvalidRequest("set exactly one of entity_key or model_name")
        if not (selection.entity_key or selection.model_name or selection.reason_code):
            raise InvalidRequest("set entity_key, model_name or reason_code")
        if selection.reason_any_rank and not selection.reason_code:
            raise InvalidRequest("reason_any_rank needs reason_code")
        if selection.model_version and not selection.model_name:
            raise InvalidRequest("model_version needs model_name")
        if selection.until_us <= selection.since_us:
            raise InvalidRequest("until must be later than since")
        if not 0 <= limit <= MAX_LIST:
            raise InvalidRequest(f"limit must be between 1 and {MAX_LIST} (0 for {DEFAULT_LIST})")
        after = parse_page_token(page_token)
        limit = limit or DEFAULT_LIST
        if not selection.entity_key:
            return await self._store.list_decisions(selection, limit, after)
        keys = self._pseudonyms.lookup_keys(selection.entity_key, selection.decision_point)
        pages = [
            await self._store.list_decisions(replace(selection, entity_key=k), limit, after)
            for k in keys
        ]
        return pages[0] if len(pages) == 1 else merge_pages(pages, limit)

    async def list_shadows(self, decision_id: str) -> list[DecisionSummary]:
        """The shadow decisions of a decision, oldest first; InvalidDecisionId, or
        DecisionNotFound when the store holds neither that decision nor a shadow of it."""
        canonical_id = canonical_decision_id(decision_id)
        shadows = await self._store.list_shadows(canonical_id)
        if shadows is None:
            raise DecisionNotFound(f"no decision with id {canonical_id} in the lineage store")
        return shadows

    async def serving_at(
        self, decision_point: str, at_us: int, window_s: int = 0, limit: int = 0
    ) -> ServingAt:
        point = _required(decision_point, "decision_point")
        if at_us <= 0:
            raise InvalidRequest("at is required")
        if not 0 <= limit <= MAX_LIST:
            raise InvalidRequest(f"limit must be between 1 and {MAX_LIST} (0 for 20)")
        window = (window_s or DEFAULT_WINDOW_S) * 1_000_000
        limit = limit or DEFAULT_NEAREST
        change = await self._store.route_change_at(at_us)
        targets = [t for t in (change.targets if change else ()) if t.decision_point == point]
        start, end = at_us - window, at_us + window + 1
        around = DecisionFilter(start, end, decision_point=point)
        # Nearest first: the `limit` latest before `at`, the `limit` earliest from it, merged.
        before = await self._store.list_decisions(
            DecisionFilter(start, at_us, decision_point=point),
            limit,
            descending=True,
            with_counts=False,
        )
        after = await self._store.list_decisions(
            DecisionFilter(at_us, end, decision_point=point), limit, with_counts=False
        )
        counts = await self._store.list_decisions(around, 0)
        nearest: list[DecisionSummary] = sorted(
            [*before.decisions, *after.decisions], key=lambda d: abs(d.decided_at_us - at_us)
        )[:limit]
        page = DecisionPage(nearest, counts.counts)
        return ServingAt(at_us, change, targets, page, start, end - 1)

    async def model_history(self, model_name: str, decision_point: str = "") -> ModelHistory:
        name = _required(model_name, "model_name")
        changes = await self._store.route_changes()
        observed = await self._store.traffic_seen(name, decision_point)
        return ModelHistory(routed_periods(changes, name, decision_point), observed)

    async def list_route_changes(
        self, decision_point: str, since_us: int, until_us: int, analysed_only: bool
    ) -> list[RouteChange]:
        """Changes effective in [since, until) naming ``decision_point`` (any if empty)."""
        if until_us <= since_us:
            raise InvalidRequest("until must be later than since")
        return [
            c
            for c in await self._store.route_changes(until_us - 1)
            if c.changed_at_us >= since_us
            and (not decision_point or any(t.decision_point == decision_point for t in c.targets))
            and (c.analysis or not analysed_only)
        ]

    async def record_route_change(self, change: RouteChange) -> tuple[RouteChange, bool]:
        _required(change.config_version, "change.config_version")
        if change.changed_at_us <= 0:
            raise InvalidRequest("change.changed_at is required")
        for n, t in enumerate(change.targets):
            for name in ("decision_point", "arm", "model_name", "model_version"):
                _required(getattr(t, name), f"change.targets[{n}].{name}")
            if not 0 <= t.weight <= 1:
                raise InvalidRequest(f"change.targets[{n}].weight must be in [0, 1]")
        return await self._store.add_route_change(change)

    async def register_manifest(self, manifest_json: str) -> tuple[RegisteredManifest, bool]:
        try:
            manifest = Manifest.model_validate_json(manifest_json)
        except pydantic.ValidationError as e:
            problem = e.errors()[0]
            where = ".".join(str(p) for p in problem["loc"]) or "manifest"
            raise InvalidRequest(f"manifest_json: {where}: {problem['msg']}") from None
        entry = RegisteredManifest(
            manifest.artifact_sha256, manifest.name, manifest.version, manifest_json, now_us()
        )
        return await self._store.put_manifest(entry)

    async def get_model(self, artifact_sha256: str) -> RegisteredManifest:
        sha = _required(artifact_sha256, "artifact_sha256").lower()
        found = await self._store.get_manifest(sha)
        if found is None:
            raise ModelNotFound(f"no manifest registered for artifact sha256 {sha}")
        return found

    async def record_override(self, override: Override) -> tuple[Override, bool]:
        decision_id = canonical_decision_id(override.decision_id)
        entry = Override(
            override.override_id.strip(),
            decision_id,
            _required(override.reviewer, "override.reviewer"),
            override.at_us or now_us(),
            _required(override.new_decision, "override.new_decision"),
            _required(override.reason, "override.reason"),
        )
        if not entry.override_id:
            entry = Override(_derived_id("ovr", entry.body()), *_fields(entry)[1:])
        return await self._store.add_override(entry)

    async def record_outcome(self, outcome: Outcome) -> tuple[Outcome, bool]:
        decision_id = canonical_decision_id(outcome.decision_id)
        entry = Outcome(
            outcome.outcome_id.strip(),
            decision_id,
            _required(outcome.label, "outcome.label"),
            outcome.at_us or now_us(),
            _required(outcome.source, "outcome.source"),
        )
        if not entry.outcome_id:
            entry = Outcome(_derived_id("out", entry.body()), *_fields(entry)[1:])
        return await self._store.add_outcome(entry)

    async def checkpoint(self) -> Checkpoint:
        return await self._store.head()

    async def access_log(
        self, selection: AccessFilter, limit: int = 0, page_token: str = ""
    ) -> AccessPage:
        if limit > MAX_LIST:
            raise InvalidRequest(f"limit {limit} is over {MAX_LIST}")
        if selection.since_us >= selection.until_us:
            raise InvalidRequest("since must be before until")
        if selection.decision_id:
            selection = replace(selection, decision_id=canonical_decision_id(selection.decision_id))
        after = 0
        if page_token:
            if not page_token.isdigit():
                raise InvalidRequest(f"page_token {page_token!r} is not one this store issued")
            after = int(page_token)
        return await self._store.list_access(selection, limit or DEFAULT_LIST, after)


def _fields(entry: Override | Outcome) -> tuple[Any, ...]:
    body = entry.body()
    del body["kind"]
    return tuple(body.values())

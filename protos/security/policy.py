"""The access policy compiled: who may do what, deny by default, versioned by its bytes.

``AccessPolicy.check_score`` and ``check_lineage`` raise ``PermissionDenied`` naming the missing
permission (``score:<decision point>``, ``pin:<decision point>``, ``lineage:<group>``). A
principal's verdicts are cached in the compiled policy (bounded), so after a principal's first
call a check is a dict lookup; a reload compiles a new policy with an empty cache.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from security.errors import PermissionDenied, SecurityConfigError
from security.policy_schema import LineagePermission, PolicyConfig

POLICY_VERSION_HEX = 16
ANY_DECISION_POINT = "*"
_CACHE_MAX = 10_000


def policy_version(content: bytes) -> str:
    """Short sha256 of the policy file's bytes: what a decision record names."""
    return hashlib.sha256(content).hexdigest()[:POLICY_VERSION_HEX]


def _pattern(principal: str) -> re.Pattern[str] | str:
    """``principal`` itself when exact; else a regex with ``*`` one segment, ``**`` anything."""
    if "*" not in principal:
        return principal
    parts = re.split(r"(\*\*|\*)", principal)
    regex = "".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in parts)
    return re.compile(regex)


@dataclass(frozen=True, slots=True)
class _Matcher:
    exact: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def of(cls, principals: list[str]) -> _Matcher:
        compiled = [_pattern(p) for p in principals]
        return cls(
            frozenset(p for p in compiled if isinstance(p, str)),
            tuple(p for p in compiled if not isinstance(p, str)),
        )

    def matches(self, principal: str) -> bool:
        return principal in self.exact or any(p.fullmatch(principal) for p in self.patterns)


@dataclass(frozen=True, slots=True)
class _Scoring:
    who: _Matcher
    points: frozenset[str]
    pin: bool


@dataclass(frozen=True, slots=True)
class _Lineage:
    who: _Matcher
    permissions: frozenset[LineagePermission]
    roles: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Grants:
    """One principal's grants, worked out once."""

    score: frozenset[str]
    pin: frozenset[str]
    lineage: frozenset[LineagePermission]
    roles: frozenset[str] = frozenset()


@dataclass(slots=True)
class AccessPolicy:
    version: str
    source: str
    config: PolicyConfig
    _scoring: tuple[_Scoring, ...] = ()
    _lineage: tuple[_Lineage, ...] = ()
    _cache: dict[str, _Grants] = field(default_factory=dict)

    @classmethod
    def compile(cls, config: PolicyConfig, version: str, source: str) -> AccessPolicy:
        scoring = tuple(
            _Scoring(_Matcher.of(g.principals), frozenset(g.decision_points), g.pin_versions)
            for g in config.scoring
        )
        lineage = tuple(
            _Lineage(_Matcher.of(g.principals), frozenset(g.permissions), frozenset(g.roles))
            for g in config.lineage
        )
        return cls(version, source, config, scoring, lineage)

    def grants(self, principal: str) -> _Grants:
        found = self._cache.get(principal)
        if found is not None:
            return found
        score: set[str] = set()
        pin: set[str] = set()
        lineage: set[LineagePermission] = set()
        roles: set[str] = set()
        for g in self._scoring:
            if g.who.matches(principal):
                score |= g.points
                if g.pin:
                    pin |= g.points
        for lg in self._lineage:
            if lg.who.matches(principal):
                lineage |= lg.permissions
                roles |= lg.roles
        found = _Grants(frozenset(score), frozenset(pin), frozenset(lineage), frozenset(roles))
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[principal] = found
        return found

    def check_score(self, principal: str, decision_point: str, *, pinned: bool) -> None:
        """Raises PermissionDenied unless ``principal`` may score ``decision_point`` (and pin a
        version of it, when ``pinned``)."""
        g = self.grants(principal)
        if decision_point not in g.score and ANY_DECISION_POINT not in g.score:
            raise PermissionDenied(principal, f"score:{decision_point}")
        if pinned and decision_point not in g.pin and ANY_DECISION_POINT not in g.pin:
            raise PermissionDenied(principal, f"pin:{decision_point}")

    def check_lineage(self, principal: str, permission: LineagePermission) -> None:
        if permission not in self.grants(principal).lineage:
            raise PermissionDenied(principal, f"lineage:{permission.value}")


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def parse_policy(content: bytes, source: str) -> AccessPolicy:
    """Parses and compiles; SecurityConfigError listing every bad path."""
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as e:
        raise SecurityConfigError(f"{source}: not valid YAML: {e}") from None
    if data is None:
        data = {}
    try:
        config = PolicyConfig.model_validate(data)
    except ValidationError as e:
        lines = [f"{_where(err['loc'])}: {err['msg']}" for err in e.errors()]
        raise SecurityConfigError(
            f"{source}: invalid access policy:\n  " + "\n  ".join(lines)
        ) from None
    return AccessPolicy.compile(config, policy_version(content), source)


def load_policy(path: Path) -> AccessPolicy:
    try:
        content = path.read_bytes()
    except OSError as e:
        raise SecurityConfigError(f"{path}: cannot read access policy: {e.strerror}") from None
    return parse_policy(content, str(path))

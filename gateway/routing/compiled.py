"""The routing config compiled: which model version answers each decision point, where, and how.

The YAML is parsed into the strict schema of ``gateway.routing.schema`` (unknown keys refused), then
checked against the model manifests found in the model directory and compiled into frozen
``Routes``: every target resolved to its manifest, rules files read and compiled, so no request
does YAML or pydantic work. Every problem is reported with its
path, e.g. ``decision_points.card-fraud.canary.weight``.

The config's version is a short sha256 of the file's bytes (and of the rules files it names);
each decision record carries it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.attempts.fallback import Fallback, FallbackStep
from gateway.attempts.policies import BreakerPolicy, HedgePolicy, RetryPolicy
from gateway.attempts.rules import RulesScorer, compile_rules
from gateway.errors import ConfigError
from gateway.routing import splits as split
from gateway.routing.schema import (
    CircuitBreakerConfig,
    DecisionPointConfig,
    EndpointConfig,
    FallbackConfig,
    RoutesConfig,
    TargetConfig,
    parse_routes,
)
from gateway.routing.thresholds import ReasonPolicy, ThresholdPolicy
from gateway.runtime_client.targets import ModelTarget, Serving
from runtimes.manifest import Manifest, served_name
from runtimes.reasons import ReasonCatalogue, ReasonRanker

__all__ = [
    "DecisionPoint",
    "Routes",
    "compile_routes",
    "config_version",
    "load_routes",
]

CONFIG_VERSION_HEX = 16


@dataclass(frozen=True, slots=True)
class Canary:
    target: ModelTarget
    weight: float
    buckets: int
    """Of canary.BUCKETS: keys whose bucket is below this go to the canary."""
    stickiness_key: str


@dataclass(frozen=True, slots=True)
class Shadow:
    target: ModelTarget
    buckets: int


@dataclass(frozen=True, slots=True)
class DecisionPoint:
    name: str
    primary: ModelTarget
    versions: Mapping[str, ModelTarget]
    """Every version of the primary's model, for requests that pin one."""
    timeout_s: float
    policy: ThresholdPolicy
    canary: Canary | None = None
    shadows: tuple[Shadow, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    hedge: HedgePolicy | None = None
    fallback: Fallback | None = None
    reasons: ReasonPolicy = field(default_factory=ReasonPolicy)


@dataclass(frozen=True, slots=True)
class Routes:
    config_version: str
    decision_points: Mapping[str, DecisionPoint]
    targets: tuple[ModelTarget, ...]
    """Every configured model version (the model client opens their channels up front)."""
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    config: RoutesConfig | None = field(default=None, compare=False)
    """The parsed file, kept to describe what a reload changed."""


class _Compiler:
    """Collects every problem with its path rather than stopping at the first."""

    def __init__(
        self,
        config: RoutesConfig,
        manifests: Mapping[tuple[str, str], Manifest],
        rules_files: Mapping[str, bytes],
        catalogues: Mapping[tuple[str, str], ReasonCatalogue],
    ) -> None:
        self.config = config
        self.manifests = manifests
        self.rules_files = rules_files
        self.catalogues = catalogues
        self.problems: list[str] = []
        self.targets: dict[tuple[str, str], ModelTarget] = {}
        self.rules: dict[str, RulesScorer] = {}

    def explained_models(self) -> dict[str, float]:
        """The models some decision point that wants reasons may answer with (every version of
        its primary's model, for pinned calls; its canary's and its fallback chain's), each with
        the lowest score any such point gives reasons from: its review threshold, or 0 when it
        gives approvals reasons too."""
        models: dict[str, float] = {}
        for point in self.config.decision_points.values():
            if not point.reasons.max_reasons:
                continue
            from_score = 0.0 if point.reasons.for_approvals else point.policy.review_at
            names = {point.primary.model}
            if point.canary is not None:
                names.add(point.canary.target.model)
            if point.fallback is not None:
                names.update(s.model for s in point.fallback.chain if s.model is not None)
            for name in names:
                models[name] = min(models.get(name, 1.0), from_score)
        return models

    def models(self) -> None:
        served: dict[tuple[str, str, str], str] = {}
        explained = self.explained_models()
        for name, model in self.config.models.items():
            for version, where in model.versions.items():
                here = f"models.{name}.versions.{version}"
                manifest = self.manifests.get((name, version))
                if manifest is None:
                    self.problems.append(
                        f"{here}: no manifest for "
                        f"{served_name(name, version)} in the model directory"
                    )
                    continue
                servings = tuple(_serving(e, manifest) for e in where.endpoints)
                for i, endpoint in enumerate(where.endpoints):
                    serving = servings[i]
                    # One model on one server cannot be two versions' artifact: one of the two
                    # identities would be wrong, and a declared one would be recorded as true.
                    key = (endpoint.address, serving.served_name, serving.served_version)
                    other = served.setdefault(key, f"{name} version {version}")
                    if other != f"{name} version {version}":
                        self.problems.append(
                            f"{here}.endpoints[{i}]: {endpoint.address} serves "
                            f"{_shown(serving)} for {other} already"
                        )
                ranker = None
                catalogue = self.catalogues.get((name, version))
                if name in explained and catalogue is not None:
                    ranker = ReasonRanker(manifest, catalogue)
                self.targets[(name, version)] = ModelTarget(
                    name, version, where.addresses, manifest, servings, ranker,
                    explained.get(name, 0.0),
                )  # fmt: skip
            for alias, version in model.aliases.items():
                if version not in model.versions:
                    self.problems.append(
                        f"models.{name}.aliases.{alias}: unknown version {version!r}"
                    )
                elif alias in model.versions and alias != version:
                    self.problems.append(
                        f"models.{name}.aliases.{alias}: shadows version {alias!r}"
                    )

    def target(self, ref: TargetConfig, here: str) -> ModelTarget | None:
        routed = self.config.models.get(ref.model)
        if routed is None:
            self.problems.append(f"{here}.model: unknown model {ref.model!r}")
            return None
        version = routed.aliases.get(ref.version, ref.version)
        if version not in routed.versions:
            self.problems.append(
                f"{here}.version: {ref.version!r} is neither a version nor an alias of {ref.model}"
            )
            return None
        target = self.targets.get((ref.model, version))
        if target is None:
            self.problems.append(
                f"{here}: no manifest for {served_name(ref.model, version)} in the model directory"
            )
        return target

    def same_schema(self, primary: ModelTarget, other: ModelTarget, here: str) -> bool:
        if other.manifest.feature_schema_version == primary.manifest.feature_schema_version:
            return True
        self.problems.append(
            f"{here}: {other.served_name} takes other features than {primary.served_name} "
            "(feature schemas differ)"
        )
        return False

    def rules_scorer(self, name: str, primary: ModelTarget, here: str) -> RulesScorer | None:
        if name not in self.config.rules:
            self.problems.append(f"{here}.rules: unknown rules {name!r} (see the rules section)")
            return None
        key = f"{name}@{primary.manifest.feature_schema_version}"
        if key in self.rules:
            return self.rules[key]
        content = self.rules_files.get(name)
        if content is None:
            self.problems.append(f"rules.{name}.file: cannot read {self.config.rules[name].file}")
            return None
        try:
            scorer, problems = compile_rules(
                name, content, primary.manifest, f"rules.{name} ({self.config.rules[name].file})"
            )
        except ConfigError as e:
            self.problems.append(str(e))
            return None
        self.problems.extend(problems)
        if scorer is not None:
            self.rules[key] = scorer
        return scorer

    def fallback(self, config: FallbackConfig, primary: ModelTarget, here: str) -> Fallback | None:
        chain: list[FallbackStep] = []
        seen = [primary.served_name]
        for i, step in enumerate(config.chain):
            where = f"{here}.chain[{i}]"
            if step.rules is not None:
                if i != len(config.chain) - 1:
                    self.problems.append(f"{where}: a rules step must be the chain's last")
                scorer = self.rules_scorer(step.rules, primary, where)
                if scorer is not None:
                    chain.append(scorer)
                continue
            assert step.model is not None and step.version is not None
            target = self.target(TargetConfig(model=step.model, version=step.version), where)
            if target is None:
                continue
            if target.served_name in seen:
                loop = " -> ".join([*seen, target.served_name])
                self.problems.append(f"{where}: fallback cycle ({loop})")
                continue
            seen.append(target.served_name)
            if self.same_schema(primary, target, where):
                chain.append(target)
        return Fallback(tuple(chain), config.reserve_ms / 1000.0)

    def point(self, name: str, point: DecisionPointConfig) -> DecisionPoint | None:
        here = f"decision_points.{name}"
        policy = point.policy
        if policy.review_at > policy.decline_at:
            self.problems.append(
                f"{here}.policy.review_at: {policy.review_at} is above "
                f"decline_at {policy.decline_at}"
            )
        primary = self.target(point.primary, f"{here}.primary")
        if primary is None:
            return None
        canary = None
        if point.canary is not None:
            target = self.target(point.canary.target, f"{here}.canary.target")
            if target is not None and self.same_schema(primary, target, f"{here}.canary.target"):
                if target == primary:
                    self.problems.append(f"{here}.canary.target: is the primary itself")
                canary = Canary(
                    target,
                    point.canary.weight,
                    split.threshold(point.canary.weight),
                    point.canary.stickiness_key,
                )
        shadows = []
        for i, shadow in enumerate(point.shadows):
            where = f"{here}.shadows[{i}].target"
            target = self.target(shadow.target, where)
            if target is not None and self.same_schema(primary, target, where):
                shadows.append(Shadow(target, split.threshold(shadow.percent)))
        fallback = None
        if point.fallback is not None:
            fallback = self.fallback(point.fallback, primary, f"{here}.fallback")
        retry = point.retry
        hedge = point.hedge
        return DecisionPoint(
            name=name,
            primary=primary,
            versions={v: t for (m, v), t in self.targets.items() if m == point.primary.model},
            timeout_s=point.timeout_ms / 1000.0,
            policy=ThresholdPolicy(
                policy.version,
                policy.review_at,
                policy.decline_at,
                policy.decisions.approve,
                policy.decisions.review,
                policy.decisions.decline,
            ),
            canary=canary,
            shadows=tuple(shadows),
            retry=RetryPolicy(
                retry.num_retries,
                retry.backoff_ms / 1000.0,
                retry.budget_percent / 100.0,
                retry.min_retries,
            ),
            hedge=None if hedge is None else HedgePolicy(hedge.delay_ms / 1000.0, hedge.use_p95),
            fallback=fallback,
            reasons=ReasonPolicy(point.reasons.max_reasons, point.reasons.for_approvals),
        )


def _serving(endpoint: EndpointConfig, manifest: Manifest) -> Serving:
    return Serving(
        endpoint.served_name or manifest.served_name, endpoint.served_version, endpoint.identity
    )


def _shown(serving: Serving) -> str:
    version = f" version {serving.served_version!r}" if serving.served_version else ""
    return f"model {serving.served_name!r}{version}"


def _breaker(config: CircuitBreakerConfig) -> BreakerPolicy:
    return BreakerPolicy(
        consecutive_failures=config.consecutive_failures,
        error_rate=config.error_rate,
        window_s=config.window_ms / 1000.0,
        min_requests=config.min_requests,
        open_s=config.open_ms / 1000.0,
        half_open_probes=config.half_open_probes,
    )


def compile_routes(
    config: RoutesConfig,
    manifests: Mapping[tuple[str, str], Manifest],
    config_version: str,
    rules_files: Mapping[str, bytes] | None = None,
    catalogues: Mapping[tuple[str, str], ReasonCatalogue] | None = None,
) -> Routes:
    """Resolves aliases, manifests and rules; raises ConfigError listing every problem's path.

    ``rules_files`` holds the content of each rules file by its name in ``config.rules``;
    ``catalogues`` the reason catalogue of each model version that has one (without, no
    version gives reasons).
    """
    compiler = _Compiler(config, manifests, rules_files or {}, catalogues or {})
    compiler.models()
    points: dict[str, DecisionPoint] = {}
    for name, point in config.decision_points.items():
        compiled = compiler.point(name, point)
        if compiled is not None:
            points[name] = compiled
    if compiler.problems:
        raise ConfigError("invalid routing config:\n  " + "\n  ".join(compiler.problems))
    return Routes(
        config_version,
        points,
        tuple(compiler.targets.values()),
        _breaker(config.circuit_breaker),
        config,
    )


def config_version(content: bytes, rules_files: Mapping[str, bytes] | None = None) -> str:
    """Short sha256 of the routing file, and of each rules file it names (by name)."""
    digest = hashlib.sha256(content)
    for name, rules in sorted((rules_files or {}).items()):
        digest.update(b"\0" + name.encode() + b"\0" + hashlib.sha256(rules).digest())
    return digest.hexdigest()[:CONFIG_VERSION_HEX]


@dataclass(frozen=True, slots=True)
class ConfigFiles:
    """The bytes of a routing file and of the rules files it names, read together."""

    content: bytes
    rules: Mapping[str, bytes]

    @property
    def version(self) -> str:
        return config_version(self.content, self.rules)


def read_config_files(path: Path) -> tuple[ConfigFiles, RoutesConfig]:
    """Reads the routing file and its rules files; raises ConfigError when unreadable."""
    try:
        content = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read routing config: {e}") from e
    config = parse_routes(content, str(path))
    rules: dict[str, bytes] = {}
    for name, entry in config.rules.items():
        # Relative to the routing file: a ConfigMap mounts both in one folder.
        rules_path = path.parent / entry.file
        try:
            rules[name] = rules_path.read_bytes()
        except OSError as e:
            raise ConfigError(f"{path}: rules.{name}.file: cannot read {rules_path}: {e}") from e
    return ConfigFiles(content, rules), config


def load_routes(
    path: Path,
    manifests: Mapping[tuple[str, str], Manifest],
    catalogues: Mapping[tuple[str, str], ReasonCatalogue] | None = None,
) -> Routes:
    """Reads, validates and compiles the routing file at ``path`` (and its rules files)."""
    files, config = read_config_files(path)
    try:
        return compile_routes(config, manifests, files.version, files.rules, catalogues)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e

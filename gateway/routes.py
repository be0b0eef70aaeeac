"""The routing config: which model version answers each decision point, where, and how fast.

The YAML is parsed into strict pydantic models (unknown keys refused), then checked against the
model manifests found in the model directory, and compiled into frozen ``Routes``: every target
resolved to its manifest and a compiled feature validator, so no request does YAML or pydantic
work. Every problem is reported with its path, e.g. ``decision_points.card-fraud.policy.review_at``.

The config's version is a short sha256 of the file's bytes; each decision record carries it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.errors import ConfigError
from gateway.policy import ThresholdPolicy
from gateway.validation import FeatureValidator
from runtimes.manifest import Manifest, served_name

CONFIG_VERSION_HEX = 16

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonEmpty = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    # Versions are strings; YAML writes `1` as an int, so numbers are accepted as their text.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class VersionConfig(_Strict):
    """Where one model version is served."""

    endpoints: tuple[NonEmpty, ...] = Field(min_length=1)
    """OIP v2 gRPC addresses (``host:port``) of runtimes serving this version."""

    @field_validator("endpoints")
    @classmethod
    def _host_port(cls, endpoints: tuple[str, ...]) -> tuple[str, ...]:
        for e in endpoints:
            host, _, port = e.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"endpoint {e!r} is not host:port")
        return endpoints


class ModelConfig(_Strict):
    """One model: its versions and the aliases (champion, challenger...) that name them."""

    versions: dict[NonEmpty, VersionConfig] = Field(min_length=1)
    aliases: dict[NonEmpty, NonEmpty] = {}


class TargetConfig(_Strict):
    """A model version, named directly or by alias."""

    model: NonEmpty
    version: NonEmpty


class PolicyConfig(_Strict):
    """Thresholds turning a score into approve / review / decline."""

    version: NonEmpty
    review_at: Probability
    decline_at: Probability


class DecisionPointConfig(_Strict):
    """One decision a caller makes (card-fraud, credit-risk)."""

    primary: TargetConfig
    timeout_ms: int = Field(gt=0)
    """Time budget for the model call; the caller's own deadline wins when sooner."""
    policy: PolicyConfig


class RoutesConfig(_Strict):
    """The whole routing file."""

    models: dict[NonEmpty, ModelConfig]
    decision_points: dict[NonEmpty, DecisionPointConfig]


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """One routable model version, with everything a request needs precompiled."""

    model: str
    version: str
    endpoints: tuple[str, ...]
    manifest: Manifest
    validator: FeatureValidator

    @property
    def served_name(self) -> str:
        return self.manifest.served_name


@dataclass(frozen=True, slots=True)
class DecisionPoint:
    name: str
    primary: ModelTarget
    versions: Mapping[str, ModelTarget]
    """Every version of the primary's model, for requests that pin one."""
    timeout_s: float
    policy: ThresholdPolicy


@dataclass(frozen=True, slots=True)
class Routes:
    config_version: str
    decision_points: Mapping[str, DecisionPoint]
    targets: tuple[ModelTarget, ...]
    """Every configured model version (the model client opens their channels up front)."""


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_routes(text: str | bytes, source: str = "routes") -> RoutesConfig:
    """Parses the YAML into the strict schema; raises ConfigError listing every bad path."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from e
    try:
        return RoutesConfig.model_validate(data)
    except ValidationError as e:
        lines = [f"{_path(err['loc']) or '<root>'}: {err['msg']}" for err in e.errors()]
        raise ConfigError(f"{source}: invalid routing config:\n  " + "\n  ".join(lines)) from e


def compile_routes(
    config: RoutesConfig, manifests: Mapping[tuple[str, str], Manifest], config_version: str
) -> Routes:
    """Resolves aliases and manifests; raises ConfigError listing every problem with its path."""
    problems: list[str] = []
    validators: dict[tuple[str, str], FeatureValidator] = {}
    targets: dict[tuple[str, str], ModelTarget] = {}
    for name, model in config.models.items():
        for version, where in model.versions.items():
            manifest = manifests.get((name, version))
            if manifest is None:
                problems.append(
                    f"models.{name}.versions.{version}: no manifest for "
                    f"{served_name(name, version)} in the model directory"
                )
                continue
            validator = validators.setdefault((name, version), FeatureValidator(manifest))
            targets[(name, version)] = ModelTarget(
                name, version, where.endpoints, manifest, validator
            )
        for alias, version in model.aliases.items():
            if version not in model.versions:
                problems.append(f"models.{name}.aliases.{alias}: unknown version {version!r}")
            elif alias in model.versions and alias != version:
                problems.append(f"models.{name}.aliases.{alias}: shadows version {alias!r}")

    points: dict[str, DecisionPoint] = {}
    for point_name, point in config.decision_points.items():
        here = f"decision_points.{point_name}"
        policy = point.policy
        if policy.review_at > policy.decline_at:
            problems.append(
                f"{here}.policy.review_at: {policy.review_at} is above "
                f"decline_at {policy.decline_at}"
            )
        routed = config.models.get(point.primary.model)
        if routed is None:
            problems.append(f"{here}.primary.model: unknown model {point.primary.model!r}")
            continue
        version = routed.aliases.get(point.primary.version, point.primary.version)
        if version not in routed.versions:
            problems.append(
                f"{here}.primary.version: {point.primary.version!r} is neither a version nor "
                f"an alias of {point.primary.model}"
            )
            continue
        primary = targets.get((point.primary.model, version))
        if primary is None:
            problems.append(
                f"{here}.primary: no manifest for "
                f"{served_name(point.primary.model, version)} in the model directory"
            )
            continue
        points[point_name] = DecisionPoint(
            name=point_name,
            primary=primary,
            versions={v: t for (m, v), t in targets.items() if m == point.primary.model},
            timeout_s=point.timeout_ms / 1000.0,
            policy=ThresholdPolicy(policy.version, policy.review_at, policy.decline_at),
        )
    if problems:
        raise ConfigError("invalid routing config:\n  " + "\n  ".join(problems))
    return Routes(config_version, points, tuple(targets.values()))


def config_version(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:CONFIG_VERSION_HEX]


def load_routes(path: Path, manifests: Mapping[tuple[str, str], Manifest]) -> Routes:
    """Reads, validates and compiles the routing file at ``path``."""
    try:
        content = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read routing config: {e}") from e
    config = parse_routes(content, str(path))
    try:
        return compile_routes(config, manifests, config_version(content))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e

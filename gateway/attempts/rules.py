"""The rule-based scorer: the last fallback, plain Python, microseconds, no way to fail.

A rules file is versioned YAML: a default score, and rules whose conditions on features give a
score and a reason code. The score is the highest of the default and every matching rule; the
reasons are the matching rules, highest score first (file order breaks ties), at most four.

::

    version: card-fraud-rules-1
    default_score: 0.05
    rules:
      - code: R01_LARGE_CARD_NOT_PRESENT
        description: Large amount with the card not present
        when: {amount: {gte: 2000}, card_present: false}
        score: 0.9

A condition is, per feature: ``{gt|gte|lt|lte: number}`` (all given must hold) for numbers, a
category or ``{in: [categories]}`` for categories, ``true``/``false`` for booleans. An absent
(optional) feature matches no condition. Conditions are checked against the model's manifest when
the routing config is compiled, so scoring a validated snapshot only compares values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import ConfigError
from lineage.v1.record import FeatureScalar, ReasonEntry
from runtimes.manifest import BooleanFeature, CategoryFeature, Manifest, NumberFeature

MAX_REASONS = 4
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
_NUMBER_OPS = ("gt", "gte", "lt", "lte")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class NumberCondition(_Strict):
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


class CategoryCondition(_Strict):
    in_: tuple[str, ...] = Field(alias="in", min_length=1)


class RuleConfig(_Strict):
    code: Annotated[str, Field(min_length=1)]
    description: Annotated[str, Field(min_length=1)]
    when: dict[str, NumberCondition | CategoryCondition | bool | str] = Field(min_length=1)
    score: Probability


class RulesFileConfig(_Strict):
    version: Annotated[str, Field(min_length=1)]
    default_score: Probability
    rules: tuple[RuleConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class RulesAnswer:
    score: float
    reasons: tuple[ReasonEntry, ...]


# (feature, low, low_inclusive, high, high_inclusive) | (feature, allowed values, their type)
_Check = tuple[str, float, bool, float, bool] | tuple[str, frozenset[FeatureScalar], type]


@dataclass(frozen=True, slots=True)
class _Rule:
    code: str
    description: str
    score: float
    checks: tuple[_Check, ...]

    def matches(self, features: Mapping[str, FeatureScalar]) -> bool:
        for check in self.checks:
            value = features.get(check[0])
            if value is None:
                return False
            if len(check) == 3:
                # The type check keeps True from matching 1.0 and the like.
                if type(value) is not check[2] or value not in check[1]:
                    return False
                continue
            _, low, low_in, high, high_in = check
            if type(value) is not float:
                return False
            if value < low or (value == low and not low_in):
                return False
            if value > high or (value == high and not high_in):
                return False
        return True


class RulesScorer:
    """A compiled rules file; ``score`` takes a snapshot that passed the model's validator."""

    __slots__ = ("_default", "_rules", "name", "sha256", "version")

    def __init__(
        self, name: str, version: str, sha256: str, default: float, rules: tuple[_Rule, ...]
    ):
        self.name = name
        self.version = version
        self.sha256 = sha256
        self._default = default
        # Highest score first, file order kept among equals: the first four matches are the reasons.
        self._rules = tuple(sorted(rules, key=lambda r: -r.score))

    def score(self, features: Mapping[str, FeatureScalar]) -> RulesAnswer:
        score = self._default
        reasons: list[ReasonEntry] = []
        for rule in self._rules:
            if rule.matches(features):
                score = max(score, rule.score)
                if len(reasons) < MAX_REASONS:
                    reasons.append(
                        ReasonEntry(
                            code=rule.code, description=rule.description, rank=len(reasons) + 1
                        )
                    )
        return RulesAnswer(score, tuple(reasons))


def _compile_check(
    name: str, condition: Any, manifest: Manifest, where: str
) -> tuple[_Check | None, str]:
    feature = next((f for f in manifest.features if f.name == name), None)
    if feature is None:
        return None, f"{where}: {manifest.served_name} has no feature {name!r}"
    if isinstance(feature, NumberFeature):
        if not isinstance(condition, NumberCondition):
            return None, f"{where}: a number feature takes {{gt|gte|lt|lte: number}}"
        low, low_in, high, high_in = -float("inf"), True, float("inf"), True
        if condition.gt is not None:
            low, low_in = condition.gt, False
        if condition.gte is not None and condition.gte > low:
            low, low_in = condition.gte, True
        if condition.lt is not None:
            high, high_in = condition.lt, False
        if condition.lte is not None and condition.lte < high:
            high, high_in = condition.lte, True
        if all(getattr(condition, op) is None for op in _NUMBER_OPS):
            return None, f"{where}: give at least one of gt, gte, lt, lte"
        return (name, low, low_in, high, high_in), ""
    if isinstance(feature, CategoryFeature):
        if isinstance(condition, str):
            allowed: tuple[str, ...] = (condition,)
        elif isinstance(condition, CategoryCondition):
            allowed = condition.in_
        else:
            return None, f"{where}: a category feature takes a category or {{in: [...]}}"
        unknown = sorted(set(allowed) - set(feature.categories))
        if unknown:
            return None, f"{where}: unknown categories {', '.join(unknown)}"
        return (name, frozenset[FeatureScalar](allowed), str), ""
    assert isinstance(feature, BooleanFeature)
    if not isinstance(condition, bool):
        return None, f"{where}: a boolean feature takes true or false"
    return (name, frozenset[FeatureScalar]((condition,)), bool), ""


def parse_rules(content: bytes, source: str) -> RulesFileConfig:
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from e
    try:
        return RulesFileConfig.model_validate(data)
    except ValidationError as e:
        from gateway.routing.schema import config_path

        lines = [f"{config_path(err['loc']) or '<root>'}: {err['msg']}" for err in e.errors()]
        raise ConfigError(f"{source}: invalid rules file:\n  " + "\n  ".join(lines)) from e


def compile_rules(
    name: str, content: bytes, manifest: Manifest, source: str
) -> tuple[RulesScorer | None, list[str]]:
    """The scorer for ``content`` checked against ``manifest``'s features, or the problems."""
    config = parse_rules(content, source)
    problems: list[str] = []
    rules: list[_Rule] = []
    for i, rule in enumerate(config.rules):
        checks: list[_Check] = []
        for feature, condition in rule.when.items():
            check, problem = _compile_check(
                feature, condition, manifest, f"{source}: rules[{i}].when.{feature}"
            )
            if check is None:
                problems.append(problem)
            else:
                checks.append(check)
        rules.append(_Rule(rule.code, rule.description, rule.score, tuple(checks)))
    if problems:
        return None, problems
    digest = hashlib.sha256(content).hexdigest()
    return RulesScorer(name, config.version, digest, config.default_score, tuple(rules)), []


def load_rules(name: str, path: Path, manifest: Manifest) -> RulesScorer:
    """Reads and compiles one rules file; raises ConfigError naming the path otherwise."""
    try:
        content = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read rules file: {e}") from e
    scorer, problems = compile_rules(name, content, manifest, str(path))
    if scorer is None:
        raise ConfigError("invalid rules file:\n  " + "\n  ".join(problems))
    return scorer

"""The routing file's schema: strict pydantic models, in Envoy's vocabulary where it has a word.

Unknown keys are refused everywhere; numbers are range-checked here, and everything that needs
other parts of the file or the model manifests (aliases, fallback loops, schemas) is checked when
the config is compiled (``gateway.routing.compiled``).
``docs/routing.md`` is the reference for every key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from gateway.errors import ConfigError

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Percent = Annotated[float, Field(ge=0.0, le=100.0)]
NonEmpty = Annotated[str, Field(min_length=1)]
DecisionName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_-]*$")]
"""A decision as answers carry it: lower case, e.g. ``decline`` or ``retain-offer``."""


class _Strict(BaseModel):
    # Versions are strings; YAML writes `1` as an int, so numbers are accepted as their text.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


Identity = Literal["response_parameter", "metadata", "declared"]
"""How the gateway knows an endpoint serves the manifest's artifact (``docs/routing.md``)."""
DEFAULT_IDENTITY: Identity = "response_parameter"


class EndpointConfig(_Strict):
    """One OIP v2 server of a model version: where it is, what it calls the model, and how the
    gateway checks that it serves the manifest's artifact. A plain ``host:port`` string in the
    file stands for ``{address: host:port}`` with every other key at its default."""

    address: NonEmpty
    """OIP v2 gRPC address, ``host:port``."""
    served_name: NonEmpty | None = None
    """The model name the server serves this version under; default ``<name>-v<version>``."""
    served_version: str = ""
    """The ``model_version`` to ask for (a Triton version folder, an MLServer model version);
    empty asks for none, and the answer may then name the manifest's version or none."""
    identity: Identity = DEFAULT_IDENTITY
    """``response_parameter``: every answer carries the artifact sha256 (scoregate's runtime);
    ``metadata``: the server's model metadata carries it, checked at start-up and on every
    reconnect; ``declared``: trusted as configured, and recorded as such."""

    @field_validator("address")
    @classmethod
    def _host_port(cls, address: str) -> str:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"endpoint {address!r} is not host:port")
        return address

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> Any:
        # An endpoint with nothing but an address is shown as the string it was written as, so
        # route-change diffs of files that never use the other keys stay as they were.
        plain = self.served_name is None and not self.served_version
        if plain and self.identity == DEFAULT_IDENTITY:
            return self.address
        return handler(self)


class VersionConfig(_Strict):
    """Where one model version is served."""

    endpoints: tuple[EndpointConfig, ...]
    """The OIP v2 servers of this version: ``host:port`` strings or ``EndpointConfig`` maps."""

    @field_validator("endpoints", mode="before")
    @classmethod
    def _addresses(cls, endpoints: Any) -> Any:
        if isinstance(endpoints, list | tuple):
            return [{"address": e} if isinstance(e, str) else e for e in endpoints]
        return endpoints

    @field_validator("endpoints")
    @classmethod
    def _once_each(cls, endpoints: tuple[EndpointConfig, ...]) -> tuple[EndpointConfig, ...]:
        if not endpoints:
            raise ValueError("a version needs at least one endpoint")
        addresses = [e.address for e in endpoints]
        if len(set(addresses)) != len(addresses):
            raise ValueError("an endpoint is listed twice")
        return endpoints

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(e.address for e in self.endpoints)


class ModelConfig(_Strict):
    """One model: its versions and the aliases (champion, challenger...) that name them."""

    versions: dict[NonEmpty, VersionConfig] = Field(min_length=1)
    aliases: dict[NonEmpty, NonEmpty] = {}


class TargetConfig(_Strict):
    """A model version, named directly or by alias."""

    model: NonEmpty
    version: NonEmpty


class RulesConfig(_Strict):
    """A rule-based scorer: a versioned rules file (``gateway.attempts.rules``)."""

    file: NonEmpty
    """Path of the rules YAML, relative to the routing file's folder."""


class DecisionNames(_Strict):
    """What each band of the policy is called in answers and records."""

    approve: DecisionName = "approve"
    review: DecisionName = "review"
    decline: DecisionName = "decline"

    @model_validator(mode="after")
    def _distinct(self) -> DecisionNames:
        if len({self.approve, self.review, self.decline}) != 3:
            raise ValueError("the three decisions must have distinct names")
        return self


class PolicyConfig(_Strict):
    """Thresholds turning a score into approve / review / decline (or the names given)."""

    version: NonEmpty
    review_at: Probability
    decline_at: Probability
    decisions: DecisionNames = DecisionNames()


class ReasonsConfig(_Strict):
    """The principal reasons a decision point's model decisions carry (docs/reasons.md)."""

    max_reasons: int = Field(default=4, ge=0, le=4)
    """At most this many, principal first (Regulation B, FCRA: at most four); 0 asks the
    runtimes for no contributions at all."""
    for_approvals: bool = False
    """Whether approvals carry reasons too; by default only the other decisions do."""


class CanaryConfig(_Strict):
    """A second version that answers for a sticky share of entities."""

    target: TargetConfig
    weight: Percent
    """Share of stickiness keys routed to the canary, in percent (two decimals count)."""
    stickiness_key: Literal["entity_key", "request_id"] = "entity_key"
    """What keeps a caller on one arm: the entity (default) or nothing stickier than a request."""


class ShadowConfig(_Strict):
    """A mirror: scored alongside, recorded as a shadow decision, never answers the caller."""

    target: TargetConfig
    percent: Percent = 100.0
    """Share of requests mirrored (sticky by entity key, whatever the canary's stickiness key)."""


class RetryConfig(_Strict):
    """Envoy's retry policy, narrowed to what is safe for scoring."""

    num_retries: int = Field(default=1, ge=0, le=3)
    """Further attempts after the first; each goes to another endpoint when there is one."""
    retry_on: tuple[Literal["unavailable"], ...] = ("unavailable",)
    """Statuses that may be retried. Only UNAVAILABLE: a timeout has spent the budget."""
    backoff_ms: int = Field(default=2, ge=0, le=1000)
    """Base back-off before a retry (jittered: between half and all of it)."""
    budget_percent: Percent = 20.0
    """Retries (and hedges) allowed as a share of requests, per decision point and process."""
    min_retries: int = Field(default=10, ge=0, le=1000)
    """Retries allowed before any request has earned budget (a token bucket's initial fill)."""


class HedgeConfig(_Strict):
    """A second attempt when the first is slow; the first answer wins, the other is cancelled."""

    delay_ms: int = Field(gt=0)
    """Wait before hedging; with ``use_p95`` it is the floor and the start value."""
    use_p95: bool = False
    """Hedge after the route's observed p95 latency (last 256 answers) instead."""


class FallbackStep(_Strict):
    """One step of a fallback chain: a model version, or a rule-based scorer by name."""

    model: NonEmpty | None = None
    version: NonEmpty | None = None
    rules: NonEmpty | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> FallbackStep:
        as_model = self.model is not None and self.version is not None
        as_rules = self.rules is not None and self.model is None and self.version is None
        if as_model == as_rules:
            raise ValueError("a fallback step is either {model, version} or {rules}")
        return self


class FallbackConfig(_Strict):
    """What answers when the routed model cannot: tried in order, then a clear error."""

    chain: tuple[FallbackStep, ...] = Field(min_length=1)
    reserve_ms: int = Field(default=10, ge=0)
    """Kept back from the budget so the last step can still answer before the deadline."""


class CircuitBreakerConfig(_Strict):
    """Per endpoint: opens on consecutive failures or a windowed error rate; probes half-open."""

    consecutive_failures: int = Field(default=5, ge=1)
    error_rate: Probability = 0.5
    """Open when at least this share of the window's calls failed..."""
    window_ms: int = Field(default=10_000, gt=0)
    min_requests: int = Field(default=20, ge=1)
    """...and the window holds at least this many calls."""
    open_ms: int = Field(default=2_000, gt=0)
    """How long an open circuit fails fast before letting a probe through (half-open)."""
    half_open_probes: int = Field(default=1, ge=1)
    """Probes that must succeed, one at a time, to close the circuit again."""


class DecisionPointConfig(_Strict):
    """One decision a caller makes (card-fraud, credit-risk)."""

    primary: TargetConfig
    canary: CanaryConfig | None = None
    shadows: tuple[ShadowConfig, ...] = ()
    timeout_ms: int = Field(gt=0)
    """Time budget for the model call; the caller's own deadline wins when sooner."""
    retry: RetryConfig = RetryConfig()
    hedge: HedgeConfig | None = None
    fallback: FallbackConfig | None = None
    policy: PolicyConfig
    reasons: ReasonsConfig = ReasonsConfig()
    """Reasons come from models whose manifest has a reason catalogue; fallback rules give
    their own."""
    approvals: Literal["enforce", "warn"] | None = None
    """Whether traffic to a model version without a valid approval in the lineage store is
    refused (``enforce``) or accepted and reported (``warn``); unset: the gateway's
    ``--approvals`` default (``gateway.routing.approvals``)."""


class RoutesConfig(_Strict):
    """The whole routing file."""

    models: dict[NonEmpty, ModelConfig]
    rules: dict[NonEmpty, RulesConfig] = {}
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    decision_points: dict[NonEmpty, DecisionPointConfig]


def config_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a dotted path: ``decision_points.x.shadows[0].percent``."""
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
        lines = [f"{config_path(err['loc']) or '<root>'}: {err['msg']}" for err in e.errors()]
        raise ConfigError(f"{source}: invalid routing config:\n  " + "\n  ".join(lines)) from e

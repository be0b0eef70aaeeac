"""A routable model version: what the runtime client needs to address and identify it."""

from __future__ import annotations

from dataclasses import dataclass, field

from lineage.v1.record import VERIFIED_BY_RESPONSE_PARAMETER
from runtimes.manifest import Manifest
from runtimes.reasons import ReasonRanker


@dataclass(frozen=True, slots=True)
class Serving:
    """How one endpoint serves a model version: the OIP v2 name and version it answers to, and
    how the gateway verifies that it serves the manifest's artifact."""

    served_name: str
    served_version: str = ""
    """The ``model_version`` sent with each request; empty sends none."""
    identity: str = VERIFIED_BY_RESPONSE_PARAMETER
    """``response_parameter``, ``metadata`` or ``declared`` (``lineage.v1.record``)."""


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """One model version, the endpoints that serve it and its manifest."""

    model: str
    version: str
    endpoints: tuple[str, ...]
    manifest: Manifest
    servings: tuple[Serving, ...] = ()
    """One per endpoint, in order; empty means every endpoint is scoregate's runtime (the
    default name, no version, identity from the response parameter)."""
    reasons: ReasonRanker | None = field(default=None, compare=False)
    """Set when a decision point routed to this version wants reasons and the version has a
    reason catalogue: its runtimes are asked for contributions, ranked through this."""
    explain_from_score: float = field(default=0.0, compare=False)
    """With ``reasons``: the lowest score any of those decision points gives reasons from (0
    when one gives approvals reasons too); rows scoring less are not explained."""
    feature_schema_version: str = field(init=False, compare=False)
    served_name: str = field(init=False, compare=False)
    """The OIP v2 model name the runtimes serve this version under by default."""

    def __post_init__(self) -> None:
        # Derived once per config load: the schema hash is dear, and both are read per row.
        object.__setattr__(self, "feature_schema_version", self.manifest.feature_schema_version)
        object.__setattr__(self, "served_name", self.manifest.served_name)
        if not self.servings:
            default = Serving(self.manifest.served_name)
            object.__setattr__(self, "servings", tuple(default for _ in self.endpoints))
        elif len(self.servings) != len(self.endpoints):
            raise ValueError("a target needs one serving per endpoint")

    def explains_at(self, serving: Serving) -> bool:
        """Whether calls through ``serving`` ask for contributions: reasons are wanted, and the
        endpoint is scoregate's runtime (the one OIP v2 server known to compute them)."""
        return self.reasons is not None and serving.identity == VERIFIED_BY_RESPONSE_PARAMETER

    def serving(self, endpoint: str) -> Serving:
        """How ``endpoint`` serves this version; the default for an endpoint not listed."""
        for address, serving in zip(self.endpoints, self.servings, strict=True):
            if address == endpoint:
                return serving
        return Serving(self.served_name)

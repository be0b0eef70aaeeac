"""What the core needs from a model runtime, free of any transport: one score for one row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.deadline import Deadline
from gateway.runtime_client.targets import ModelTarget
from lineage.v1.record import VERIFIED_BY_RESPONSE_PARAMETER, FeatureScalar
from runtimes.reasons import ReasonRanker


@dataclass(slots=True)  # made per row, never kept: see gateway.service.ScoreInput
class ModelAnswer:
    """A score and the identity of what produced it, as the runtime reported it."""

    score: float
    model_name: str
    model_version: str
    artifact_sha256: str
    runtime_instance: str
    endpoint: str
    batch_size: int = 1
    """Rows in the runtime call this answer came from (micro-batching, ScoreBatch)."""
    scoring_environment: str = ""
    """The runtime's onnxruntime version and settings, as it reported them ("" if it did not)."""
    identity_verified_by: str = VERIFIED_BY_RESPONSE_PARAMETER
    """How the artifact sha256 above was verified (``lineage.v1.record``'s VERIFIED_BY_ values)."""
    contributions: list[float] | None = None
    """The row's feature contributions (manifest order), when they were asked for."""
    contributions_base: float = 0.0
    ranker: ReasonRanker | None = None
    """Ranks ``contributions`` into reasons (the version's catalogue), when they were asked for."""


class ModelClient(Protocol):
    async def infer(
        self,
        target: ModelTarget,
        features: Mapping[str, FeatureScalar],
        deadline: Deadline,
        request_id: str = "",
        endpoint: str | None = None,
    ) -> ModelAnswer:
        """Scores one validated row before ``deadline``; raises ModelRuntimeError otherwise.

        ``endpoint`` (one of ``target.endpoints``) is where to call; None lets the client pick.
        """
        ...

    async def infer_batch(
        self,
        target: ModelTarget,
        rows: Sequence[Mapping[str, FeatureScalar]],
        deadline: Deadline,
        request_id: str = "",
        endpoint: str | None = None,
    ) -> list[ModelAnswer]:
        """Scores validated rows in one runtime call; one answer per row, in order."""
        ...

    def add_targets(self, targets: Iterable[ModelTarget]) -> None:
        """Gets ready for a reloaded config's targets without disturbing calls in flight."""
        ...

    async def close(self) -> None: ...

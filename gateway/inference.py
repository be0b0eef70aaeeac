"""What the core needs from a model runtime, free of any transport: one score for one row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.routes import ModelTarget
from governance.record import FeatureScalar


@dataclass(frozen=True, slots=True)
class ModelAnswer:
    """A score and the identity of what produced it, as the runtime reported it."""

    score: float
    model_name: str
    model_version: str
    artifact_sha256: str
    runtime_instance: str
    endpoint: str


class ModelClient(Protocol):
    async def infer(
        self,
        target: ModelTarget,
        features: Mapping[str, FeatureScalar],
        timeout_s: float,
        request_id: str = "",
    ) -> ModelAnswer:
        """Scores one validated row within ``timeout_s``; raises ModelRuntimeError otherwise."""
        ...

    async def close(self) -> None: ...

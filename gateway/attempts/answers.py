"""What produced a score: a model version's answer or a rules file's, in one shape."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.attempts.rules import RulesAnswer, RulesScorer
from gateway.runtime_client.protocol import ModelAnswer
from lineage.v1.record import VERIFIED_BY_RULES_FILE
from runtimes.reasons import ReasonRanker


# Made per row and never kept: a plain (not frozen) dataclass, whose __init__ assigns the
# attributes directly instead of through object.__setattr__ per field (see
# docs/performance-log.md).
@dataclass(slots=True)
class Answer:
    score: float
    model_name: str
    model_version: str
    model_sha256: str
    runtime_instance: str
    reasons: RulesAnswer | None = None
    """The rules' reasons, when a rules file answered."""
    endpoint: str = ""
    batch_size: int = 1
    """Rows in the runtime call that scored this one (micro-batching, ScoreBatch)."""
    scoring_environment: str = ""
    """The runtime's onnxruntime version and settings (a model's answers only)."""
    identity_verified_by: str = VERIFIED_BY_RULES_FILE
    """How the artifact sha256 was verified (``lineage.v1.record``'s VERIFIED_BY_ values)."""
    contributions: list[float] | None = None
    """The row's feature contributions (manifest order), when the runtime computed them."""
    contributions_base: float = 0.0
    ranker: ReasonRanker | None = None
    """Ranks ``contributions`` into reasons through the version's catalogue."""

    @classmethod
    def of_model(cls, answer: ModelAnswer) -> Answer:
        return cls(
            answer.score,
            answer.model_name,
            answer.model_version,
            answer.artifact_sha256,
            answer.runtime_instance,
            endpoint=answer.endpoint,
            batch_size=answer.batch_size,
            scoring_environment=answer.scoring_environment,
            identity_verified_by=answer.identity_verified_by,
            contributions=answer.contributions,
            contributions_base=answer.contributions_base,
            ranker=answer.ranker,
        )

    @classmethod
    def of_rules(cls, scorer: RulesScorer, answer: RulesAnswer, instance: str) -> Answer:
        return cls(answer.score, scorer.name, scorer.version, scorer.sha256, instance, answer)

"""Answering the rows routed to one model version: that version, else the fallback chain.

The rows of a Score call (one) and of a ScoreBatch group (many) take the same way: one runtime
call for the routed version under the decision point's retry, hedge and breaker policies; if it
cannot answer, each step of the chain in order, a model version called once (no retries or
hedges: the budget is nearly spent) while the deadline lasts, or a rules file, which always
answers. The answer says whether it came from the chain and why; when nothing answers, the
routed version's error is raised with every step's error appended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.attempts.answers import Answer
from gateway.attempts.caller import CallPlan, ModelCaller, Tally
from gateway.attempts.rules import RulesScorer
from gateway.deadline import Deadline
from gateway.errors import ModelRuntimeError
from gateway.runtime_client.targets import ModelTarget
from lineage.v1.record import FeatureScalar

FallbackStep = ModelTarget | RulesScorer

MAX_ERROR_CHARS = 300
"""Of the routed version's error, kept on a fallback decision's record."""


@dataclass(frozen=True, slots=True)
class Fallback:
    """A decision point's chain, and the time it keeps in reserve from the routed call."""

    chain: tuple[FallbackStep, ...]
    reserve_s: float = 0.01


@dataclass(slots=True)
class Answered:
    answers: list[Answer]
    """One per row, in the rows' order."""
    fallback_reason: str = ""
    """Why the routed version did not answer ("" when it did)."""
    fallback_from: str = ""
    fallback_error: str = ""


class FallbackScorer:
    """Scores a group of validated rows with one model version, falling back along the chain."""

    def __init__(self, caller: ModelCaller, instance: str) -> None:
        self._caller = caller
        self._instance = instance

    async def _model(
        self,
        target: ModelTarget,
        rows: Sequence[dict[str, FeatureScalar]],
        request_id: str,
        deadline: Deadline,
        plan: CallPlan,
        tally: Tally,
    ) -> list[Answer]:
        if len(rows) == 1:
            answer = await self._caller.call(target, rows[0], request_id, deadline, plan, tally)
            return [Answer.of_model(answer)]
        answers = await self._caller.call_batch(target, rows, request_id, deadline, plan, tally)
        return [Answer.of_model(a) for a in answers]

    async def answer(
        self,
        target: ModelTarget,
        rows: Sequence[dict[str, FeatureScalar]],
        request_id: str,
        deadline: Deadline,
        plan: CallPlan,
        fallback: Fallback | None,
        tally: Tally,
    ) -> Answered:
        """Every row's answer; raises the routed version's ModelRuntimeError when neither it
        nor any step of ``fallback`` could answer."""
        try:
            return Answered(await self._model(target, rows, request_id, deadline, plan, tally))
        except ModelRuntimeError as e:
            if fallback is None:
                raise
            error = e
        errors: list[str] = []
        answers: list[Answer] | None = None
        for step in fallback.chain:
            if isinstance(step, RulesScorer):
                answers = [Answer.of_rules(step, step.score(r), self._instance) for r in rows]
                break
            if step == target or deadline.remaining() <= 0:
                continue
            try:
                answers = await self._model(
                    step, rows, request_id, deadline, CallPlan(plan.point), tally
                )
            except ModelRuntimeError as e:
                errors.append(str(e))
                continue
            break
        if answers is None:
            error.args = (f"{error} (and no fallback could answer: {'; '.join(errors)})",)
            raise error
        return Answered(
            answers, error.fallback_reason, target.served_name, str(error)[:MAX_ERROR_CHARS]
        )

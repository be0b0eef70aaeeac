"""Answering the rows routed to one model version: that version, else the fallback chain.

The rows of a Score call (one) and of a ScoreBatch group (many) take the same way: one runtime
call for the routed version under the decision point's retry, hedge and breaker policies; if it
cannot answer, each step of the chain in order, a model version called once (no retries or
hedges: the budget is nearly spent) while the deadline lasts, or a rules file, which always
answers. The answer says whether it came from the chain and why; when nothing answers, the
routed version's error is raised with every step's error appended.

A group of many rows (a ScoreBatch's rows for one version) that the runtime refuses
(``RuntimeRefusedInput``: one row may be the cause) is split in halves, each answered the same
way, so that only the refused rows fall back or fail and the others keep the model's answer.
Bisection finds one bad row among 1,000 in about 20 calls; ``MAX_SPLIT_CALLS`` bounds the extra
calls for a group, so a runtime that refuses every row (a runtime and manifest out of step) is
not sent 2N calls: past it, what is still refused falls back (or fails) as a whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.attempts.answers import Answer
from gateway.attempts.caller import CallPlan, ModelCaller, Tally
from gateway.attempts.rules import RulesScorer
from gateway.deadline import Deadline
from gateway.errors import ModelRuntimeError, RuntimeRefusedInput
from gateway.runtime_client.targets import ModelTarget
from lineage.v1.record import FeatureScalar

FallbackStep = ModelTarget | RulesScorer

MAX_ERROR_CHARS = 300
"""Of the routed version's error, kept on a fallback decision's record."""
MAX_SPLIT_CALLS = 64
"""Extra runtime calls a refused group may take to isolate its refused rows."""


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


Part = tuple[int, int, Answered | ModelRuntimeError]
"""Rows ``[start, stop)`` of a group, and their answer or their error."""


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
            return await self._fall_back(
                target, rows, request_id, deadline, plan, fallback, e, tally
            )

    async def answer_parts(
        self,
        target: ModelTarget,
        rows: Sequence[dict[str, FeatureScalar]],
        request_id: str,
        deadline: Deadline,
        plan: CallPlan,
        fallback: Fallback | None,
        tally: Tally,
    ) -> list[Part]:
        """As ``answer``, for a group of many rows: a refused group is split until the refused
        rows are found (see the module docstring); every row is in exactly one part."""
        return await self._parts(
            target, rows, 0, request_id, deadline, plan, fallback, tally, [MAX_SPLIT_CALLS]
        )

    async def _parts(
        self,
        target: ModelTarget,
        rows: Sequence[dict[str, FeatureScalar]],
        start: int,
        request_id: str,
        deadline: Deadline,
        plan: CallPlan,
        fallback: Fallback | None,
        tally: Tally,
        calls_left: list[int],
    ) -> list[Part]:
        stop = start + len(rows)
        try:
            answers = await self._model(target, rows, request_id, deadline, plan, tally)
            return [(start, stop, Answered(answers))]
        except RuntimeRefusedInput as e:
            error: ModelRuntimeError = e
            if len(rows) > 1 and calls_left[0] >= 2 and deadline.remaining() > 0:
                calls_left[0] -= 2
                mid = len(rows) // 2
                halves = await asyncio.gather(
                    self._parts(
                        target, rows[:mid], start, request_id, deadline, plan, fallback, tally,
                        calls_left,
                    ),
                    self._parts(
                        target, rows[mid:], start + mid, request_id, deadline, plan, fallback,
                        tally, calls_left,
                    ),
                )  # fmt: skip
                return halves[0] + halves[1]
        except ModelRuntimeError as e:
            error = e
        if fallback is None:
            return [(start, stop, error)]
        try:
            answered = await self._fall_back(
                target, rows, request_id, deadline, plan, fallback, error, tally
            )
        except ModelRuntimeError as e:
            return [(start, stop, e)]
        return [(start, stop, answered)]

    async def _fall_back(
        self,
        target: ModelTarget,
        rows: Sequence[dict[str, FeatureScalar]],
        request_id: str,
        deadline: Deadline,
        plan: CallPlan,
        fallback: Fallback,
        error: ModelRuntimeError,
        tally: Tally,
    ) -> Answered:
        """The chain's answer after the routed version failed with ``error``."""
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

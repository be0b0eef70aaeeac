"""The ScoringService edge: protobuf in, core call, protobuf out, errors mapped in one place."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.errors import GatewayError, status_for
from gateway.service import DecisionService, ScoreInput
from gateway.validation import FeatureInput
from governance.record import DecisionRecord
from scoring.v1 import scoring_pb2, scoring_pb2_grpc

log = logging.getLogger(__name__)


def _features(values: Mapping[str, scoring_pb2.FeatureValue]) -> dict[str, FeatureInput]:
    features: dict[str, FeatureInput] = {}
    for name, value in values.items():
        kind = value.WhichOneof("kind")
        features[name] = getattr(value, kind) if kind is not None else None
    return features


def to_input(request: scoring_pb2.ScoreRequest) -> ScoreInput:
    features = _features(request.features)
    return ScoreInput(
        request_id=request.request_id,
        decision_point=request.decision_point,
        entity_key=request.entity_key,
        features=features,
        model_version=request.model_version,
    )


def to_response(record: DecisionRecord) -> scoring_pb2.ScoreResponse:
    seconds, micros = divmod(record.decided_at_us, 1_000_000)
    return scoring_pb2.ScoreResponse(
        decision_id=record.decision_id,
        request_id=record.request_id,
        decision_point=record.decision_point,
        score=record.score,
        decision=record.decision,
        model_name=record.model_name,
        model_version=record.model_version,
        model_sha256=record.model_sha256,
        arm=record.arm,
        fallback_reason=record.fallback_reason,
        reason_codes=[
            scoring_pb2.ReasonCode(code=r.code, description=r.description, rank=r.rank)
            for r in record.reasons
        ],
        trace_id=record.trace_id,
        policy_version=record.policy_version,
        decided_at=Timestamp(seconds=seconds, nanos=micros * 1000),
    )


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(self, service: DecisionService) -> None:
        self._service = service

    async def Score(
        self, request: scoring_pb2.ScoreRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> scoring_pb2.ScoreResponse:
        try:
            record = await self._service.score(
                to_input(request), time_remaining_s=context.time_remaining()
            )
        except Exception as e:
            if isinstance(e, GatewayError):
                log.debug("Score %s refused: %s", request.request_id, e)
            else:
                log.exception("Score %s failed unexpectedly", request.request_id)
            await context.abort_with_status(status_for(e))
        return to_response(record)

    async def ScoreBatch(
        self,
        request: scoring_pb2.ScoreBatchRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> scoring_pb2.ScoreBatchResponse:
        rows = [
            ScoreInput(
                row.request_id, request.decision_point, row.entity_key, _features(row.features)
            )
            for row in request.rows
        ]
        try:
            results = await self._service.score_batch(
                request.decision_point,
                rows,
                model_version=request.model_version,
                time_remaining_s=context.time_remaining(),
            )
        except Exception as e:
            if isinstance(e, GatewayError):
                log.debug("ScoreBatch refused: %s", e)
            else:
                log.exception("ScoreBatch failed unexpectedly")
            await context.abort_with_status(status_for(e))
        return scoring_pb2.ScoreBatchResponse(
            results=[
                scoring_pb2.ScoreBatchResult(decision=to_response(r))
                if isinstance(r, DecisionRecord)
                else scoring_pb2.ScoreBatchResult(
                    error=scoring_pb2.RowError(code=r.code.name, message=r.message)
                )
                for r in results
            ]
        )

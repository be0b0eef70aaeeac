"""The ScoringService edge: the caller checked, protobuf in, core call, protobuf out, errors
mapped in one place.

A call is authenticated before its body is looked at (an unauthenticated caller learns nothing
about the request's validity) and authorised for the decision point it names before anything is
scored."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc

from gateway.caller import OPEN_ACCESS, Caller
from gateway.decisions.service import DecisionService, ScoreInput
from gateway.decisions.validation import FeatureInput
from gateway.errors import FieldViolation, GatewayError, InvalidRequest, status_for
from gateway.limits import MAX_BATCH_ROWS
from gateway.metrics import GatewayMetrics
from gateway.transport.access import EdgeAccess
from gateway.transport.columns import column_rows
from gateway.transport.handlers import Malformed
from lineage.v1.record import DecisionRecord
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from security.errors import AuthenticationFailed, PermissionDenied, SecurityError

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


def batch_rows(request: scoring_pb2.ScoreBatchRequest) -> list[ScoreInput]:
    """The call's rows, from whichever form it used; InvalidRequest for both or a bad shape."""
    if request.HasField("columns"):
        if request.rows:
            raise InvalidRequest(
                [FieldViolation("columns", "set either rows or columns, not both")]
            )
        return column_rows(request.decision_point, request.columns)
    if len(request.rows) > MAX_BATCH_ROWS:
        # Refused before any row is converted: a 4 MiB request carries ~300k of them.
        raise InvalidRequest(
            [
                FieldViolation(
                    "rows", f"{len(request.rows):,} rows; at most {MAX_BATCH_ROWS} per call"
                )
            ]
        )
    point = request.decision_point
    return [
        ScoreInput(row.request_id, point, row.entity_key, _features(row.features))
        for row in request.rows
    ]


def fill_response(response: scoring_pb2.ScoreResponse, record: DecisionRecord) -> None:
    """Sets ``response`` (empty) from ``record``, field by field: cheaper than building the
    message from keyword arguments (docs/performance-log.md), and in place, so a batch's results
    are not copied."""
    response.decision_id = record.decision_id
    response.request_id = record.request_id
    response.decision_point = record.decision_point
    response.score = record.score
    response.decision = record.decision
    response.model_name = record.model_name
    response.model_version = record.model_version
    response.model_sha256 = record.model_sha256
    response.arm = record.arm
    response.fallback_reason = record.fallback_reason
    if record.reasons:
        add = response.reason_codes.add
        for r in record.reasons:
            add(code=r.code, description=r.description, rank=r.rank)
        response.reason_catalogue_version = record.reason_catalogue_version
    response.trace_id = record.trace_id
    response.policy_version = record.policy_version
    seconds, micros = divmod(record.decided_at_us, 1_000_000)
    decided_at = response.decided_at
    decided_at.seconds = seconds
    decided_at.nanos = micros * 1000


def to_response(record: DecisionRecord) -> scoring_pb2.ScoreResponse:
    response = scoring_pb2.ScoreResponse()
    fill_response(response, record)
    return response


def _malformed(request: Malformed) -> InvalidRequest:
    return InvalidRequest([FieldViolation("(request body)", request.reason)])


async def _refuse(
    context: grpc.aio.ServicerContext[object, object], error: Exception, call: str
) -> None:
    """Ends the call with ``error``'s status (``gateway.errors.status_for``): a GatewayError is
    the caller's answer, anything else a bug, logged with its traceback and reported INTERNAL."""
    if isinstance(error, GatewayError | SecurityError):
        log.debug("%s refused: %s", call, error)
    else:
        log.error("%s failed unexpectedly", call, exc_info=error)
    await context.abort_with_status(status_for(error))


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    def __init__(
        self,
        service: DecisionService,
        access: EdgeAccess | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._service = service
        self._access = access or EdgeAccess()
        # Open access checks nothing: Score skips the check's coroutine, paid per decision.
        self._open = self._access.open
        self._refusals = (metrics or service.metrics).access_refusals

    async def _checked(
        self,
        request: scoring_pb2.ScoreRequest | scoring_pb2.ScoreBatchRequest | Malformed,
        context: grpc.aio.ServicerContext[object, object],
    ) -> Caller:
        """The caller, authenticated before the body is looked at, then authorised for the
        decision point (and pinning) the request asks for; a malformed body is refused after
        authentication, so an unauthenticated caller learns nothing about it."""
        principal = await self._access.principal(context)
        if isinstance(request, Malformed):
            raise _malformed(request)
        return self._access.caller(
            principal, request.decision_point, pinned=bool(request.model_version)
        )

    def _count(self, error: Exception) -> None:
        if isinstance(error, AuthenticationFailed | PermissionDenied):
            self._refusals.labels(error.code.name).inc()

    async def Score(
        self,
        request: scoring_pb2.ScoreRequest | Malformed,
        context: grpc.aio.ServicerContext[object, object],
    ) -> scoring_pb2.ScoreResponse:
        try:
            if isinstance(request, Malformed) or not self._open:
                caller = await self._checked(request, context)
            else:
                caller = OPEN_ACCESS
            assert not isinstance(request, Malformed), "refused by _checked"
            record = await self._service.score(
                to_input(request), time_remaining_s=context.time_remaining(), caller=caller
            )
        except Exception as e:
            self._count(e)
            # Not the request id: a caller may use a card number as one (docs/security.md).
            await _refuse(context, e, "Score")
        return to_response(record)

    async def ScoreBatch(
        self,
        request: scoring_pb2.ScoreBatchRequest | Malformed,
        context: grpc.aio.ServicerContext[object, object],
    ) -> scoring_pb2.ScoreBatchResponse:
        try:
            caller = await self._checked(request, context)
            assert not isinstance(request, Malformed), "refused by _checked"
            rows = batch_rows(request)
            results = await self._service.score_batch(
                request.decision_point,
                rows,
                model_version=request.model_version,
                time_remaining_s=context.time_remaining(),
                caller=caller,
            )
        except Exception as e:
            self._count(e)
            await _refuse(context, e, "ScoreBatch")
        response = scoring_pb2.ScoreBatchResponse()
        add = response.results.add
        for r in results:
            if isinstance(r, DecisionRecord):
                fill_response(add().decision, r)
            else:
                error = add().error
                error.code = r.code.name
                error.message = r.message
        return response

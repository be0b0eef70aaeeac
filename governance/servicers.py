"""gRPC servicers: the OTLP TraceService receiver and lineage.v1.LineageService.

They only convert messages; errors they raise become statuses in ``governance.status``. Who is
calling has been authenticated and authorised before (``governance.access``): the servicers
read the ``Caller`` to keep personal data from callers without ``read_features``
(``governance.redaction``) and to record who made an override or an outcome. The
receiver answers an Export only after its batch is committed, which is the sender's
acknowledgement; a store failure surfaces as UNAVAILABLE, which OTLP senders retry.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from governance import approval_messages, convert
from governance.approvals import ApprovalService, Approver
from governance.caller import CALLER, Caller
from governance.convert import decision_to_proto
from governance.errors import InvalidRequest
from governance.ingest import Ingestor
from governance.monitoring.queries import DriftQueries
from governance.monitoring.windows import HOUR_US
from governance.otlp import extract_records
from governance.queries import LineageQueries
from governance.redaction import redact_record, redact_summaries
from governance.store.sql import now_us
from lineage.v1 import lineage_pb2, lineage_pb2_grpc


class OtlpTraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, ingestor: Ingestor) -> None:
        self._ingestor = ingestor

    async def Export(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        batch = extract_records(request)
        outcome = await self._ingestor.ingest(batch.records, batch.rejections, batch.ignored_spans)
        response = trace_service_pb2.ExportTraceServiceResponse()
        if outcome.rejections:
            response.partial_success.rejected_spans = len(outcome.rejections)
            response.partial_success.error_message = outcome.rejection_message()
        return response


class LineageServicer(lineage_pb2_grpc.LineageServiceServicer):
    def __init__(
        self, queries: LineageQueries, drift: DriftQueries, approvals: ApprovalService
    ) -> None:
        self._queries = queries
        self._drift = drift
        self._approvals = approvals

    async def GetDecision(
        self, request: lineage_pb2.GetDecisionRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.DecisionRecord:
        return redact_record(
            decision_to_proto(await self._queries.get_decision(request.decision_id))
        )

    async def ListDecisions(
        self, request: lineage_pb2.ListDecisionsRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.ListDecisionsResponse:
        selection = convert.filter_from_proto(request, now_us())
        page = await self._queries.list_decisions(selection, request.limit, request.page_token)
        response = convert.page_to_proto(page)
        redact_summaries(response.decisions)
        return response

    async def ListShadows(
        self, request: lineage_pb2.ListShadowsRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.ListShadowsResponse:
        shadows = await self._queries.list_shadows(request.decision_id)
        response = lineage_pb2.ListShadowsResponse(
            shadows=[convert.summary_to_proto(d) for d in shadows]
        )
        redact_summaries(response.shadows)
        return response

    async def RecordRouteChange(
        self, request: lineage_pb2.RecordRouteChangeRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.RecordRouteChangeResponse:
        try:
            change = convert.route_change_from_proto(request.change)
        except ValueError as e:
            raise InvalidRequest(str(e)) from None
        caller = CALLER.get()
        if caller.authenticated:
            # Who asked is who authenticated, whatever the request says.
            change = replace(change, initiated_by=caller.principal.id)
        stored, new = await self._queries.record_route_change(change)
        return lineage_pb2.RecordRouteChangeResponse(
            change=convert.route_change_to_proto(stored), duplicate=not new
        )

    async def ListRouteChanges(
        self, request: lineage_pb2.ListRouteChangesRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.ListRouteChangesResponse:
        since = convert.timestamp_to_us(request.since) if request.HasField("since") else 0
        until = convert.timestamp_to_us(request.until) if request.HasField("until") else now_us()
        changes = await self._queries.list_route_changes(
            request.decision_point, since, until, request.analysed_only
        )
        return lineage_pb2.ListRouteChangesResponse(
            changes=[convert.route_change_to_proto(c) for c in changes]
        )

    async def GetServingAt(
        self, request: lineage_pb2.GetServingAtRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.GetServingAtResponse:
        at = convert.timestamp_to_us(request.at) if request.HasField("at") else 0
        answer = await self._queries.serving_at(
            request.decision_point, at, request.window_s, request.limit
        )
        response = convert.serving_to_proto(answer)
        redact_summaries(response.decisions)
        return response

    async def GetModelHistory(
        self, request: lineage_pb2.GetModelHistoryRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.GetModelHistoryResponse:
        history = await self._queries.model_history(request.model_name, request.decision_point)
        return convert.history_to_proto(history)

    async def RegisterManifest(
        self, request: lineage_pb2.RegisterManifestRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.RegisterManifestResponse:
        stored, new = await self._queries.register_manifest(request.manifest_json)
        return lineage_pb2.RegisterManifestResponse(
            model=convert.manifest_to_proto(stored), duplicate=not new
        )

    async def GetModel(
        self, request: lineage_pb2.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.ModelManifest:
        return convert.manifest_to_proto(await self._queries.get_model(request.artifact_sha256))

    async def RecordOverride(
        self, request: lineage_pb2.RecordOverrideRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.Override:
        override = convert.override_from_proto(request.override)
        caller = CALLER.get()
        if caller.authenticated:
            # Who overrode is who authenticated, whatever the request says.
            override = replace(override, reviewer=caller.principal.id)
        stored, _ = await self._queries.record_override(override)
        return convert.override_to_proto(stored)

    async def RecordOutcome(
        self, request: lineage_pb2.RecordOutcomeRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.Outcome:
        outcome = convert.outcome_from_proto(request.outcome)
        caller = CALLER.get()
        if caller.authenticated:
            # The source is the authenticated system that reported it, not a request field.
            outcome = replace(outcome, source=caller.principal.id)
        stored, _ = await self._queries.record_outcome(outcome)
        return convert.outcome_to_proto(stored)

    async def RecordApproval(
        self, request: lineage_pb2.RecordApprovalRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.Approval:
        approver = _approver(CALLER.get(), request.principal, tuple(request.roles))
        stored = await self._approvals.approve(
            approval_messages.ref_from_proto(request.model),
            approver,
            approval_messages.evidence_from_proto(request.evidence),
            request.comment,
        )
        return approval_messages.approval_to_proto(stored)

    async def RevokeApproval(
        self, request: lineage_pb2.RevokeApprovalRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.Revocation:
        approver = _approver(CALLER.get(), request.principal, ())
        stored, revoked = await self._approvals.revoke(
            approval_messages.ref_from_proto(request.model), approver, request.reason
        )
        return lineage_pb2.Revocation(
            revocation=approval_messages.approval_to_proto(stored), revoked=revoked
        )

    async def GetApprovals(
        self, request: lineage_pb2.GetApprovalsRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.GetApprovalsResponse:
        if request.HasField("model"):
            found = [await self._approvals.status(approval_messages.ref_from_proto(request.model))]
        else:
            found = await self._approvals.statuses(list(request.artifact_sha256))
        return lineage_pb2.GetApprovalsResponse(
            statuses=[approval_messages.status_to_proto(s) for s in found]
        )

    async def GetCheckpoint(
        self, request: lineage_pb2.GetCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.Checkpoint:
        return convert.checkpoint_to_proto(await self._queries.checkpoint())

    async def ListAccessLog(
        self, request: lineage_pb2.ListAccessLogRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.ListAccessLogResponse:
        selection = convert.access_filter_from_proto(request, now_us())
        page = await self._queries.access_log(selection, request.limit, request.page_token)
        return convert.access_page_to_proto(page)

    async def GetDrift(
        self, request: lineage_pb2.GetDriftRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.GetDriftResponse:
        since, until = _period(request)
        step = request.step_hours * HOUR_US
        windows = await self._drift.drift(request.decision_point, since, until, step)
        return convert.drift_to_proto(windows)

    async def GetPerformance(
        self, request: lineage_pb2.GetPerformanceRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.GetPerformanceResponse:
        since, until = _period(request)
        found = await self._drift.performance(
            request.decision_point, since, until, list(request.bad_labels)
        )
        return convert.performance_to_proto(found)

    async def CompareArms(
        self, request: lineage_pb2.CompareArmsRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.CompareArmsResponse:
        since, until = _period(request)
        found = await self._drift.compare_arms(
            request.decision_point, since, until, list(request.canary_served_names)
        )
        return convert.arms_to_proto(found, since, until)


def _period(
    request: lineage_pb2.GetDriftRequest
    | lineage_pb2.GetPerformanceRequest
    | lineage_pb2.CompareArmsRequest,
) -> tuple[int, int]:
    """[since, until) in microseconds: ``since`` required, ``until`` now when unset."""
    if not request.HasField("since"):
        raise InvalidRequest("since: required (the start of the period)")
    since = convert.timestamp_to_us(request.since)
    until = convert.timestamp_to_us(request.until) if request.HasField("until") else now_us()
    return since, until


def _approver(caller: Caller, principal: str, roles: tuple[str, ...]) -> Approver:
    """The authenticated principal with the roles its policy grants; under open access the
    request's, kept as unauthenticated."""
    if caller.authenticated:
        assert caller.policy is not None
        granted = caller.policy.grants(caller.principal.id).roles
        return Approver(caller.principal.id, tuple(sorted(granted)), caller.principal.verified_by)
    return Approver(principal, roles, caller.principal.verified_by)

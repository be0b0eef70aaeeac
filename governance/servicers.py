"""gRPC servicers: the OTLP TraceService receiver and lineage.v1.LineageService.

They only convert messages; errors they raise become statuses in ``governance.status``. The
receiver answers an Export only after its batch is committed, which is the sender's
acknowledgement; a store failure surfaces as UNAVAILABLE, which OTLP senders retry.
"""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from governance.convert import decision_to_proto
from governance.ingest import Ingestor
from governance.otlp import extract_records
from governance.queries import LineageQueries
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
    def __init__(self, queries: LineageQueries) -> None:
        self._queries = queries

    async def GetDecision(
        self, request: lineage_pb2.GetDecisionRequest, context: grpc.aio.ServicerContext
    ) -> lineage_pb2.DecisionRecord:
        return decision_to_proto(await self._queries.get_decision(request.decision_id))

"""When the database cannot be written, Export answers UNAVAILABLE so the sender retries."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health
from lineage_support import MakeRecord
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from governance.ingest import Ingestor
from governance.server import build_server
from governance.store import SqliteLineageStore
from lineage.v1.record import record_to_json
from lineage.v1.spans import RECORD_ATTRIBUTE, SPAN_NAME


async def test_export_is_unavailable_when_the_store_fails(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    store = SqliteLineageStore(tmp_path / "l.db")
    await store.open()
    await store.close()  # every write now fails, as on a lost disk
    server = build_server(store, Ingestor(store), health.aio.HealthServicer())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    attribute = common_pb2.KeyValue(
        key=RECORD_ATTRIBUTE, value=common_pb2.AnyValue(string_value=record_to_json(make_record()))
    )
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        spans=[trace_pb2.Span(name=SPAN_NAME, attributes=[attribute])]
                    )
                ]
            )
        ]
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=5)
    finally:
        await server.stop(None)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "closed" in (info.value.details() or "")

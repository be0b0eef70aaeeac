"""General-tracing spans reach a collector over mutual TLS, and plaintext to a remote collector
is warned about.

The collector here is the test's own OTLP receiver (a stand-in for the OpenTelemetry Collector,
which does not run here), with a server certificate and a required client certificate from a CA
made in the test; the gateway is the real process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from support.certs import CertificateAuthority

from loadtests.local.topology import ManagedProcess, start_gateway
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import score_request

RoutesWriter = Callable[[Path, dict[str, Any]], Path]


class PeerRecordingCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps each export's span names and the client certificate's subject it came with."""

    def __init__(self) -> None:
        self.exports: list[tuple[list[str], str]] = []

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        names = [
            span.name
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]
        peer = context.auth_context().get("x509_common_name", [b""])[0].decode()
        self.exports.append((names, peer))
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def tls_collector(tmp_path: Path) -> Iterator[tuple[str, PeerRecordingCollector, list[str]]]:
    ca = CertificateAuthority("collector test CA")
    server = ca.server("otel-collector")
    collector = PeerRecordingCollector()
    otlp = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, otlp)  # type: ignore[no-untyped-call]
    credentials = grpc.ssl_server_credentials(
        [(server.key_pem, server.cert_pem)],
        root_certificates=ca.cert_pem,
        require_client_auth=True,
    )
    port = otlp.add_secure_port("127.0.0.1:0", credentials)
    otlp.start()
    client_cert, client_key = ca.client(common_name="scoregate-gateway").write(
        tmp_path, "gateway-client"
    )
    ca_file = ca.write(tmp_path / "collector-ca.pem")
    flags = [
        "--otlp-tls", "true",
        "--otlp-tls-ca-file", str(ca_file),
        "--otlp-tls-cert-file", str(client_cert),
        "--otlp-tls-key-file", str(client_key),
        "--otlp-tls-server-name", "localhost",
    ]  # fmt: skip
    try:
        yield f"127.0.0.1:{port}", collector, flags
    finally:
        otlp.stop(0)


def _score_some(address: str, count: int) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        for i, features in enumerate(sample_requests("card-fraud", count, seed=23)):
            stub.Score(score_request(f"trace-{i}", "card-fraud", f"cust-{i}", features), timeout=10)


def test_spans_reach_a_collector_that_requires_client_certificates(
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], dict[str, Any]],
    write_routes: RoutesWriter,
    tls_collector: tuple[str, PeerRecordingCollector, list[str]],
    tmp_path: Path,
) -> None:
    endpoint, collector, flags = tls_collector
    routes = write_routes(tmp_path / "routes.yaml", demo_config(runtime.address))
    gateway = start_gateway(
        routes,
        model_dir,
        tmp_path,
        otlp_endpoint=endpoint,
        extra_args=[*flags, "--otlp-schedule-delay-ms", "50"],
    )
    try:
        _score_some(gateway.address, 5)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(len(n) for n, _ in collector.exports) < 5:
            time.sleep(0.1)
        spans = [name for names, _ in collector.exports for name in names]
        assert len(spans) >= 5, gateway.log_tail()
        # Each export came over the handshake with the gateway's own client certificate.
        assert {peer for _, peer in collector.exports} == {"scoregate-gateway"}
        assert "general-tracing spans go to" not in gateway.log_tail()
    finally:
        assert gateway.stop() == 0, gateway.log_tail()


def test_the_collector_refuses_a_gateway_without_its_client_certificate(
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], dict[str, Any]],
    write_routes: RoutesWriter,
    tls_collector: tuple[str, PeerRecordingCollector, list[str]],
    tmp_path: Path,
) -> None:
    """Only the CA (no client certificate): the handshake fails, nothing is delivered, and
    scoring goes on, since general tracing is best effort."""
    endpoint, collector, flags = tls_collector
    args = flags
    cut = args.index("--otlp-tls-cert-file")
    without_cert = args[:cut] + args[cut + 4 :]
    routes = write_routes(tmp_path / "routes.yaml", demo_config(runtime.address))
    gateway = start_gateway(
        routes,
        model_dir,
        tmp_path,
        otlp_endpoint=endpoint,
        extra_args=[*without_cert, "--otlp-schedule-delay-ms", "50"],
    )
    try:
        _score_some(gateway.address, 3)
        time.sleep(1.5)
        assert collector.exports == []
    finally:
        assert gateway.stop() == 0, gateway.log_tail()


def test_plaintext_to_a_remote_collector_is_warned_about(
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], dict[str, Any]],
    write_routes: RoutesWriter,
    tmp_path: Path,
) -> None:
    routes = write_routes(tmp_path / "routes.yaml", demo_config(runtime.address))
    # A documentation-range address (RFC 5737): nothing answers, and it is not loopback.
    gateway = start_gateway(routes, model_dir, tmp_path, otlp_endpoint="192.0.2.10:4317")
    try:
        _score_some(gateway.address, 1)
        assert "general-tracing spans go to 192.0.2.10:4317 in plaintext" in gateway.log_tail()
    finally:
        gateway.stop()

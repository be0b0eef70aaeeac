"""``scoregate-gateway``: the ScoringService gRPC server, and the gateway's composition root.

``create`` builds a ``Gateway`` from settings and checked routes (runtime client, sink and outbox
with its sender, decision service, config watcher, gRPC server); ``run`` is the process around
it. Start-up: settings, manifests, routing config and the TLS and access settings
(``gateway.access_setup``) are checked first (a bad config exits 2 with the offending path or
setting), then runtime channels are opened, the server starts, health turns SERVING
and the ready file is written (with the metrics address when ``--metrics-port`` is set). The
routing file and the access policy are then polled for changes (``gateway.routing.reload``,
``security.policy_reload``). SIGTERM/SIGINT: health
NOT_SERVING, calls still accepted for ``drain_delay_s``, then in-flight calls get ``grace_s`` to
finish, shadow calls are let finish briefly, pending decision spans are flushed, exit 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from pydantic import ValidationError

from gateway.access_setup import EdgeSecurity, edge_security, is_loopback
from gateway.errors import ConfigError
from gateway.heap import settle_heap
from gateway.loop_load import LoopLoad
from gateway.metrics import GatewayMetrics
from gateway.routing.compiled import Routes, load_routes
from gateway.settings import GatewaySettings, parse_settings
from reflection.service import enable_reflection
from runtimes.manifest import ManifestError
from runtimes.reasons import load_checked_models
from scoring.v1 import scoring_pb2
from security.errors import SecurityConfigError
from security.pseudonyms import KeyedHash
from security.tls import ClientTls

if TYPE_CHECKING:
    from gateway.decisions.service import DecisionService
    from gateway.outbox import Outbox, OutboxConfig, OutboxMetrics
    from gateway.recording.route_changes import LineageRouteChangeSink
    from gateway.recording.sinks import DecisionSink
    from gateway.recording.store_approvals import StoreApprovals
    from gateway.routing.reload import ConfigWatcher
    from gateway.runtime_client.protocol import ModelClient

log = logging.getLogger("gateway")

SERVICE_NAME = "scoregate-gateway"
SCORING_SERVICE = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name
EXIT_CONFIG = 2
DRAIN_QUEUED_S = 0.2
"""How long calls already queued in gRPC core have to reach the closed gate and be refused."""


def gateway_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def tracing_endpoint(settings: GatewaySettings) -> str:
    """Where spans are exported. Not to the lineage store once the outbox delivers records
    there: it would reject the (redacted) decision spans, which carry no record."""
    if settings.outbox_dir is not None and settings.otlp_endpoint == settings.lineage_endpoint:
        return ""
    return settings.otlp_endpoint


def span_export_tls(
    settings: GatewaySettings, endpoint: str, security: EdgeSecurity | None
) -> ClientTls | None:
    """The exporter's TLS: without the outbox the records ride on the spans to the store, whose
    TLS applies; to any other endpoint (a collector) the --otlp-tls settings'."""
    if security is None:
        return None
    if endpoint == settings.lineage_endpoint:
        return security.lineage_tls
    return security.tracing_tls


def tracer_provider(
    settings: GatewaySettings, instance: str, security: EdgeSecurity | None = None
) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": SERVICE_NAME, "service.instance.id": instance})
    )
    endpoint = tracing_endpoint(settings)
    if endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        tls = span_export_tls(settings, endpoint, security)
        if tls is not None:
            exporter = OTLPSpanExporter(
                endpoint=endpoint,
                credentials=tls.channel_credentials(),
                # OpenTelemetry annotates a one-option tuple; the override is at most one.
                channel_options=cast("tuple[tuple[str, str]]", tls.channel_options()) or None,
            )
        else:
            if not is_loopback(endpoint.split("://")[-1].rsplit(":", 1)[0].strip("[]")):
                log.warning(
                    "general-tracing spans go to %s in plaintext (h2c): give --otlp-tls "
                    "unless a mesh encrypts that hop",
                    endpoint,
                )
            exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
        provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=settings.otlp_schedule_delay_ms)
        )
    return provider


def telemetry_pseudonyms(settings: GatewaySettings) -> KeyedHash:
    """The key for entity keys and request ids on spans (ValueError if its file is unusable)."""
    if settings.telemetry_key_file is not None:
        return KeyedHash.from_file(settings.telemetry_key_file)
    if tracing_endpoint(settings):
        log.info(
            "no --telemetry-key-file: span entity and request-id hashes use a random key of "
            "this process and match nothing outside it"
        )
    return KeyedHash.random()


def backlog_options(max_in_flight: int | None, max_pending: int) -> tuple[tuple[str, int], ...]:
    """With load shedding on, gRPC core also refuses calls waiting for the event loop beyond
    ``max_pending`` (with CANCELLED: gRPC core's status for it; at random between it and twice
    it, always beyond): when Python falls behind, new calls are refused before any Python runs
    for them, instead of queueing where every answer, refusals included, gets late. A small
    bound keeps refusals fast at twice the saturation rate, and admitted calls keep their p99
    (docs/performance.md, the shedding target; figures in docs/performance-log.md)."""
    if max_in_flight is None:
        return ()
    return (
        ("grpc.server.max_pending_requests", max_pending),
        ("grpc.server.max_pending_requests_hard_limit", 2 * max_pending),
    )


def write_ready_file(path: Path, info: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info) + "\n")
    os.replace(tmp, path)


def load_config(settings: GatewaySettings) -> Routes:
    models = load_checked_models(settings.model_dir)
    return load_routes(settings.routes, models.manifests, models.catalogues)


async def open_outbox(
    config: OutboxConfig,
    metrics: OutboxMetrics | None = None,
    loop_busy: Callable[[], float] | None = None,
) -> Outbox:
    """The outbox at ``config.directory``, with its sender to ``config.endpoint`` if any."""
    from gateway.outbox import Outbox
    from gateway.outbox.sender import Sender

    outbox = await Outbox.open(config, metrics, loop_busy)
    if config.endpoint:
        outbox.start_delivery(Sender(outbox, config, outbox.metrics))
    return outbox


async def open_sink(
    settings: GatewaySettings,
    metrics: GatewayMetrics,
    instance: str,
    load: LoopLoad,
    security: EdgeSecurity | None = None,
) -> tuple[DecisionSink, Outbox | None]:
    """The durable outbox's sink when ``outbox_dir`` is set, else the span-attribute sink."""
    from gateway.recording.sinks import SpanAttributeSink

    if settings.outbox_dir is None:
        return SpanAttributeSink(), None
    from gateway.outbox import OutboxConfig, OutboxMetrics, OutboxSink

    config = OutboxConfig(
        settings.outbox_dir,
        endpoint=settings.lineage_endpoint,
        tls=security.lineage_tls if security is not None else None,
        max_unacked_bytes=settings.outbox_max_bytes,
        max_unacked_records=settings.outbox_max_records,
        segment_bytes=settings.outbox_segment_bytes,
        sync=settings.outbox_sync,
        preallocate=settings.outbox_preallocate,
        instance=instance,
    )
    outbox = await open_outbox(config, OutboxMetrics(metrics.registry), lambda: load.busy)
    log.info(
        "decision records go through the outbox %s to %s (%d waiting from before)",
        settings.outbox_dir,
        config.endpoint or "nowhere (no lineage endpoint: kept, not sent)",
        outbox.unacked_records,
    )
    return OutboxSink(outbox), outbox


async def leave_rotation_on_outbox_failure(
    outbox: Outbox, health_servicer: health.aio.HealthServicer
) -> None:
    """A gateway whose outbox cannot write refuses every decision: reporting NOT_SERVING takes it
    out of the load balancer's rotation, so callers reach a healthy replica instead."""
    error = await outbox.wait_for_failure()
    log.critical("outbox failed (%s): health NOT_SERVING", error)
    for name in ("", SCORING_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)


def start_metrics_server(settings: GatewaySettings, metrics: GatewayMetrics) -> Any | None:
    """Serves /metrics on ``metrics_port`` (a thread of prometheus_client's); None when off."""
    if not settings.metrics_port:
        return None
    from prometheus_client import start_http_server

    httpd, _ = start_http_server(
        settings.metrics_port, addr=settings.host, registry=metrics.registry
    )
    return httpd


@dataclass
class Gateway:
    """A gateway built by ``create`` and not yet serving: ``start``, ``drain``, ``close``.

    ``run`` is what the process does with it; a test can do the same in its own event loop.
    """

    settings: GatewaySettings
    routes: Routes
    metrics: GatewayMetrics
    service: DecisionService
    client: ModelClient
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    watcher: ConfigWatcher
    provider: TracerProvider
    port: int
    outbox: Outbox | None = None
    lineage_sink: LineageRouteChangeSink | None = None
    security: EdgeSecurity | None = None
    approvals: StoreApprovals | None = None
    httpd: Any | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    async def start(self) -> dict[str, object]:
        """Serves, reports SERVING and returns what the ready file says (addresses, pid)."""
        settings, routes = self.settings, self.routes
        self.httpd = start_metrics_server(settings, self.metrics)
        await self.server.start()
        if settings.reload_interval_s > 0:
            self.tasks.append(asyncio.create_task(self.watcher.run(settings.reload_interval_s)))
            policy = self.security.policy if self.security is not None else None
            if policy is not None:
                self.tasks.append(asyncio.create_task(policy.run(settings.reload_interval_s)))
        if self.outbox is not None:
            self.tasks.append(
                asyncio.create_task(leave_rotation_on_outbox_failure(self.outbox, self.health))
            )
        for name in ("", SCORING_SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving ScoringService on %s (config %s; decision points %s; runtimes %s)",
            self.address,
            routes.config_version,
            ", ".join(sorted(routes.decision_points)),
            ", ".join(sorted({e for t in routes.targets for e in t.endpoints})),
        )
        self._log_security()
        tls = self.security is not None and self.security.server_tls is not None
        ready: dict[str, object] = {"grpc": self.address, "pid": os.getpid(), "tls": tls}
        if self.httpd is not None:
            ready["metrics"] = f"{settings.host}:{self.httpd.server_port}"
            log.info("serving metrics on http://%s/metrics", ready["metrics"])
        return ready

    def _log_security(self) -> None:
        security = self.security
        if security is None or security.server_tls is None:
            if is_loopback(self.settings.host):
                log.info("listening in plaintext (h2c) on loopback")
            else:
                log.warning(
                    "listening in PLAINTEXT on %s: callers' requests and answers cross the "
                    "network unencrypted; use --tls-cert-file/--tls-key-file unless a proxy "
                    "terminates TLS in front of this gateway",
                    self.address,
                )
        else:
            log.info(
                "TLS on (client certificates %s; certificate %s re-read on change)",
                security.server_tls.client_certificate.value,
                security.server_tls.cert_file,
            )
        if security is None or security.access.open:
            log.warning("open access: every caller may score every decision point")
        elif security.policy is not None:
            log.info(
                "access policy %s (%s) in force", security.policy.current.version,
                security.policy.path,
            )  # fmt: skip

    async def drain(self) -> None:
        """NOT_SERVING, calls still served for ``drain_delay_s`` (while load balancers take the
        pod out), then new calls refused with UNAVAILABLE and those admitted given ``grace_s``
        to be answered, before the listener closes.

        The gateway refuses new calls itself rather than through gRPC's stop: gRPC cancels the
        calls still queued for the event loop when it stops, and a CANCELLED tells a caller
        nothing; UNAVAILABLE tells it to go to another replica."""
        settings = self.settings
        log.info(
            "stopping: NOT_SERVING, serving for %.1f s more, then draining for up to %.1f s",
            settings.drain_delay_s,
            settings.grace_s,
        )
        await self.health.enter_graceful_shutdown()
        if settings.drain_delay_s:
            await asyncio.sleep(settings.drain_delay_s)
        if not await self.service.stop_admitting(settings.grace_s):
            log.warning(
                "%d calls still in flight after %.1f s", self.service.admission.in_flight,
                settings.grace_s,
            )  # fmt: skip
        # Calls still queued in gRPC core meet the closed gate and get UNAVAILABLE.
        await asyncio.sleep(DRAIN_QUEUED_S)
        await self.server.stop(DRAIN_QUEUED_S)

    async def close(self) -> None:
        """Stops whatever still runs, in dependency order; safe after ``drain`` or without it."""
        for task in self.tasks:
            task.cancel()
        await self.server.stop(None)
        await self.service.close()
        if self.outbox is not None:
            # The server has stopped: every answered decision's record is already durable.
            await self.outbox.close(self.settings.outbox_drain_s)
        await self.client.close()
        if self.lineage_sink is not None:
            await self.lineage_sink.close()
        if self.approvals is not None:
            await self.approvals.close()
        if self.httpd is not None:
            self.httpd.shutdown()
        # Flushes decision spans still waiting in the batch processor.
        await asyncio.to_thread(self.provider.shutdown)


def model_client(
    settings: GatewaySettings,
    routes: Routes,
    metrics: GatewayMetrics,
    load: LoopLoad,
    security: EdgeSecurity | None = None,
) -> ModelClient:
    """The OIP v2 client, micro-batched when ``batching`` is on."""
    from gateway.runtime_client.oip import OipModelClient

    tls = security.runtime_tls if security is not None else None
    client: ModelClient = OipModelClient(routes.targets, tls)
    if not settings.batching:
        return client
    from gateway.runtime_client.batching import BatchingModelClient, BatchingPolicy

    policy = BatchingPolicy(
        settings.batch_max_size,
        settings.batch_max_wait_us / 1e6,
        hold_busy=settings.batch_hold_busy,
    )
    batching = BatchingModelClient(
        client,
        policy,
        metrics.runtime_call_rows.observe,
        lambda: load.busy,
        on_resend=metrics.batch_rows_resent.inc,
    )
    metrics.batch_hold.set_function(lambda: float(batching.holding))
    return batching


async def create(
    settings: GatewaySettings,
    routes: Routes,
    load: LoopLoad,
    security: EdgeSecurity | None = None,
    pseudonyms: KeyedHash | None = None,
) -> Gateway:
    """Builds the gateway from settings and checked routes: clients, sink, service, server.
    ``security`` is built from the settings when not given (SecurityConfigError if refused);
    routes giving unapproved versions traffic are refused here (ConfigError), before anything
    is opened but the store's channel."""
    from gateway.decisions.service import DecisionService
    from gateway.recording.route_changes import FanOutRouteChangeSink, LineageRouteChangeSink
    from gateway.recording.store_approvals import StoreApprovals
    from gateway.routing.approvals import ApprovalGate
    from gateway.routing.changes import LoggingRouteChangeSink, RouteChangeSink
    from gateway.routing.reload import ConfigWatcher
    from gateway.transport.handlers import MAX_RECEIVE_BYTES, add_scoring_service
    from gateway.transport.servicer import ScoringServicer

    if security is None:
        security = edge_security(settings)
    approvals = None
    if settings.lineage_endpoint:
        approvals = StoreApprovals(settings.lineage_endpoint, security.lineage_tls)
    gate = ApprovalGate(
        approvals,
        settings.approvals,
        fail_open=settings.approvals_fail_open,
        max_age_s=settings.approvals_max_age_s,
    )
    try:
        unapproved = await gate.check(routes)
    except ConfigError:
        if approvals is not None:
            await approvals.close()
        raise
    instance = gateway_instance()
    provider = tracer_provider(settings, instance, security)
    if pseudonyms is None:
        pseudonyms = telemetry_pseudonyms(settings)
    metrics = GatewayMetrics()
    client = model_client(settings, routes, metrics, load, security)
    metrics.loop_busy.set_function(lambda: load.busy)
    sink, outbox = await open_sink(settings, metrics, instance, load, security)
    service = DecisionService(
        routes,
        client,
        # No tracing backend: no SDK span per decision (the record's ids are drawn cheaply).
        provider.get_tracer("scoregate.gateway") if tracing_endpoint(settings) else None,
        sink,
        instance,
        metrics=metrics,
        max_in_flight=settings.max_in_flight,
        shadow_max_in_flight=settings.shadow_max_in_flight,
        pseudonyms=pseudonyms,
    )
    lineage_sink = None
    events: RouteChangeSink = LoggingRouteChangeSink()
    if settings.lineage_endpoint:
        lineage_sink = LineageRouteChangeSink(
            settings.lineage_endpoint, settings.model_dir, security.lineage_tls
        )
        events = FanOutRouteChangeSink(events, lineage_sink)
    watcher = ConfigWatcher(
        settings.routes, settings.model_dir, service, events, instance, gate=gate
    )
    watcher.announce(unapproved)
    server = grpc.aio.server(
        # No SO_REUSEPORT: a second gateway on a taken port must fail, not share it silently.
        options=(
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            *backlog_options(settings.max_in_flight, settings.max_pending_calls),
        ),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    if security.policy is not None:
        reloads = metrics.access_policy_reloads
        security.policy.on_reload = lambda result: reloads.labels(result).inc()
    add_scoring_service(ScoringServicer(service, security.access, metrics), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((SCORING_SERVICE, health.SERVICE_NAME), server)
    address = f"{settings.host}:{settings.port}"
    if security.server_tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, security.server_tls.server_credentials())
    return Gateway(
        settings, routes, metrics, service, client, server, health_servicer, watcher, provider,
        port, outbox, lineage_sink, security, approvals,
    )  # fmt: skip


async def run(
    settings: GatewaySettings,
    routes: Routes,
    load: LoopLoad,
    security: EdgeSecurity,
    pseudonyms: KeyedHash | None = None,
) -> int:
    """The process: create, start, write the ready file, serve until SIGTERM/SIGINT, stop."""
    try:
        gateway = await create(settings, routes, load, security, pseudonyms)
    except ConfigError as e:
        log.error("refusing to start: %s", e)
        return EXIT_CONFIG
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        ready = await gateway.start()
        settle_heap()
        if settings.ready_file is not None:
            write_ready_file(settings.ready_file, ready)
        await stop.wait()
        await gateway.drain()
    finally:
        await gateway.close()
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(argv)
    except ValidationError as e:
        print(f"scoregate-gateway: invalid settings:\n{e}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        routes = load_config(settings)
        security = edge_security(settings)
        pseudonyms = telemetry_pseudonyms(settings)
    except (ConfigError, ManifestError, SecurityConfigError, ValueError) as e:
        log.error("refusing to start: %s", e)
        return EXIT_CONFIG
    load = LoopLoad()
    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(load)) as runner:
        return runner.run(run(settings, routes, load, security, pseudonyms))


if __name__ == "__main__":
    sys.exit(main())

"""The lineage store's server: ``scoregate-lineage`` / ``scoregate lineage serve``.

One grpc.aio server on one port carries the OTLP TraceService receiver, lineage.v1.LineageService,
grpc health and reflection, over TLS (its certificate re-read on rotation) unless ``--plaintext``.
Every OTLP and LineageService call is authenticated, authorised and logged in the access log
(``governance.access``); health and reflection are open to whoever completes the handshake.
SIGTERM/SIGINT: health NOT_SERVING, stop with the grace period (an Export in flight still
commits and answers), flush the access log, close the database, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

import grpc
import pydantic
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from governance.access import AccessInterceptor, StoreAccess
from governance.approvals import ApprovalService
from governance.audit import AccessLog
from governance.chain import append_checkpoint
from governance.errors import ConfigurationError, LineageError
from governance.ingest import Ingestor
from governance.monitoring.queries import DriftQueries
from governance.pseudonyms import EntityPseudonyms
from governance.queries import LineageQueries
from governance.security_setup import is_loopback, store_security
from governance.servicers import LineageServicer, OtlpTraceReceiver
from governance.settings import LineageSettings
from governance.status import ErrorStatusInterceptor
from governance.store import LineageStore, create_store
from governance.web.listener import WebListener
from governance.web.setup import build_page
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from reflection.service import enable_reflection
from security.errors import SecurityConfigError
from security.pseudonyms import KeyedHash

log = logging.getLogger("governance.server")

TRACE_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
LINEAGE_SERVICE = lineage_pb2.DESCRIPTOR.services_by_name["LineageService"].full_name
# OTLP senders batch up to 512 spans by default, each with a record of a few kB.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


def build_parser(prog: str = "scoregate-lineage") -> argparse.ArgumentParser:
    fields = LineageSettings.model_fields
    parser = argparse.ArgumentParser(
        prog=prog, description="Run the lineage store. Flags override SCOREGATE_LINEAGE_* env."
    )
    parser.add_argument("--db-url", help=fields["db_url"].description)
    parser.add_argument("--host", help=fields["host"].description)
    parser.add_argument("--port", type=int, help=fields["port"].description)
    parser.add_argument("--ready-file", type=Path, help=fields["ready_file"].description)
    parser.add_argument("--log-level", help=fields["log_level"].description)
    parser.add_argument("--checkpoint-file", type=Path, help=fields["checkpoint_file"].description)
    parser.add_argument(
        "--checkpoint-interval",
        dest="checkpoint_interval_s",
        type=float,
        help=fields["checkpoint_interval_s"].description,
    )
    parser.add_argument(
        "--verify-interval",
        dest="verify_interval_s",
        type=float,
        help=fields["verify_interval_s"].description,
    )
    parser.add_argument("--metrics-port", type=int, help=fields["metrics_port"].description)
    parser.add_argument(
        "--metrics-refresh",
        dest="metrics_refresh_s",
        type=float,
        help=fields["metrics_refresh_s"].description,
    )
    parser.add_argument("--adverse-outcomes", help=fields["adverse_outcomes"].description)
    parser.add_argument(
        "--performance-window-days",
        type=int,
        help=fields["performance_window_days"].description,
    )
    parser.add_argument("--entity-key-file", type=Path, help=fields["entity_key_file"].description)
    parser.add_argument("--web-port", type=int, help=fields["web_port"].description)
    parser.add_argument("--web-host", help=fields["web_host"].description)
    parser.add_argument("--web-allow-open", help=fields["web_allow_open"].description)
    parser.add_argument("--web-model-dir", type=Path, help=fields["web_model_dir"].description)
    parser.add_argument("--pseudonymise-entities", help=fields["pseudonymise_entities"].description)
    parser.add_argument(
        "--grace-period",
        dest="grace_period_s",
        type=float,
        help=fields["grace_period_s"].description,
    )
    # TLS and access control: one flag per setting, named as the setting (pydantic parses).
    for name in _SECURITY_FLAGS:
        flag = "--" + name.removesuffix("_s").replace("_", "-")
        parser.add_argument(flag, dest=name, help=fields[name].description)
    return parser


_SECURITY_FLAGS = (
    "plaintext",
    "tls_cert_file",
    "tls_key_file",
    "tls_ca_file",
    "tls_client_certificate",
    "certificate_identity",
    "certificate_subject_field",
    "jwt_jwks_file",
    "jwt_jwks_url",
    "jwt_issuer",
    "jwt_audience",
    "jwt_algorithms",
    "jwt_leeway_s",
    "jwt_principal_claim",
    "access_policy",
    "access_policy_interval_s",
    "open_access",
    "access_log_flush_s",
)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def write_ready_file(path: Path, info: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info) + "\n")
    os.replace(tmp, path)


def build_server(
    store: LineageStore,
    ingestor: Ingestor,
    health_servicer: health.aio.HealthServicer,
    access: StoreAccess | None = None,
    audit: AccessLog | None = None,
    pseudonyms: EntityPseudonyms | None = None,
) -> grpc.aio.Server:
    """All services and the interceptors on one server, not yet bound or started; without
    ``access``, open access, and without ``audit``, no access log."""
    server = grpc.aio.server(
        # The error mapping is outermost, so that the access checks' refusals reach it.
        interceptors=[
            ErrorStatusInterceptor(),
            AccessInterceptor(access or StoreAccess(), audit, pseudonyms),
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        OtlpTraceReceiver(ingestor), server
    )
    lineage_pb2_grpc.add_LineageServiceServicer_to_server(
        LineageServicer(
            LineageQueries(store, pseudonyms),
            DriftQueries(store),
            ApprovalService(store, open_access=access is None or access.open),
        ),
        server,
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((TRACE_SERVICE, LINEAGE_SERVICE, health.SERVICE_NAME), server)
    return server


async def export_checkpoints(store: LineageStore, path: Path, interval_s: float) -> None:
    """Appends a checkpoint whenever the chain has grown, every ``interval_s``, until cancelled;
    one last time when cancelled, so a clean stop leaves the final head outside the store."""
    last = -1
    while True:
        try:
            await asyncio.sleep(interval_s)
        finally:
            try:
                head = await store.head()
                if head.size != last:
                    await asyncio.to_thread(append_checkpoint, path, head)
                    last = head.size
            except LineageError as e:
                log.warning("checkpoint not exported: %s", e)


def entity_pseudonyms(settings: LineageSettings) -> EntityPseudonyms:
    """Which decision points' entity keys are pseudonymised (ValueError if the key is unusable,
    or missing while some point asks for it)."""
    key = (
        None if settings.entity_key_file is None else KeyedHash.from_file(settings.entity_key_file)
    )
    points = settings.pseudonymise_entities.split(",")
    pseudonyms = EntityPseudonyms(key, points)
    if pseudonyms.enabled:
        log.info("entity keys pseudonymised at ingest for: %s", settings.pseudonymise_entities)
    return pseudonyms


def start_metrics(
    settings: LineageSettings, store: LineageStore, background: list[asyncio.Task[None]]
) -> str:
    """Serves /metrics (a prometheus_client thread), refreshes its drift and, with
    --verify-interval, verifies the chain in the background; returns the address, or "" when
    --metrics-port is unset."""
    if settings.metrics_port is None:
        return ""
    from prometheus_client import CollectorRegistry, start_http_server

    from governance.monitoring.chain_check import ChainCheck
    from governance.monitoring.metrics import DriftCollector

    registry = CollectorRegistry()
    collector = DriftCollector(
        store, settings.adverse(), settings.performance_window_days * 86_400_000_000
    )
    registry.register(collector)
    httpd, _ = start_http_server(settings.metrics_port, addr=settings.host, registry=registry)
    background.append(asyncio.create_task(collector.run(settings.metrics_refresh_s)))
    if settings.verify_interval_s > 0:
        chain = ChainCheck(store, settings.checkpoint_file)
        registry.register(chain)
        background.append(asyncio.create_task(chain.run(settings.verify_interval_s)))
    return _address(settings.host, httpd.server_port)


async def serve(settings: LineageSettings) -> int:
    try:
        security = store_security(settings)
        pseudonyms = entity_pseudonyms(settings)
    except (SecurityConfigError, ValueError) as e:
        raise ConfigurationError(str(e)) from None
    store = create_store(settings.db_url)
    await store.open()
    ingestor = Ingestor(store, pseudonyms)
    audit = AccessLog(store, flush_interval_s=settings.access_log_flush_s)
    background = [asyncio.create_task(audit.run())]
    if security.access.policy is not None:
        background.append(
            asyncio.create_task(security.access.policy.run(settings.access_policy_interval_s))
        )
    page: WebListener | None = None
    try:
        if settings.checkpoint_file is not None:
            background.append(
                asyncio.create_task(
                    export_checkpoints(
                        store, settings.checkpoint_file, settings.checkpoint_interval_s
                    )
                )
            )
        metrics_address = start_metrics(settings, store, background)
        page = build_page(settings, store, security, audit, pseudonyms)
        health_servicer = health.aio.HealthServicer()
        services = ("", TRACE_SERVICE, LINEAGE_SERVICE)
        for name in services:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        server = build_server(store, ingestor, health_servicer, security.access, audit, pseudonyms)
        bind = _address(settings.host, settings.port)
        if security.server_tls is None:
            port = server.add_insecure_port(bind)
            if not is_loopback(settings.host):
                log.warning(
                    "serving PLAINTEXT on %s: decision records, lineage queries and "
                    "credentials cross the network unencrypted (--plaintext)",
                    settings.host,
                )
        else:
            port = server.add_secure_port(bind, security.server_tls.server_credentials())
        if page is not None:
            await page.start()
        await server.start()
        for name in services:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        address = _address(settings.host, port)
        if settings.ready_file is not None:
            write_ready_file(
                settings.ready_file,
                {
                    "grpc": address,
                    "pid": os.getpid(),
                    "tls": security.server_tls is not None,
                    **({"metrics": metrics_address} if metrics_address else {}),
                    **({"web": page.url} if page is not None else {}),
                },
            )
        log.info(
            "lineage store serving on %s (%s, %s; database %s)",
            address,
            "plaintext" if security.server_tls is None else "TLS",
            "open access" if security.access.open else "access policy",
            store.describe(),
        )

        await stopping.wait()
        log.info("stopping: NOT_SERVING, draining for up to %.1f s", settings.grace_period_s)
        await health_servicer.enter_graceful_shutdown()
        await server.stop(settings.grace_period_s)
    finally:
        if page is not None:
            await page.stop()
        # Cancelling the access log's task flushes what it holds before the database closes.
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await store.close()
        s = ingestor.stats
        log.info(
            "lineage store stopped: %d batches, %d stored, %d duplicates, %d rejected, "
            "%d other spans ignored",
            s.batches,
            s.stored,
            s.duplicates,
            s.rejected,
            s.ignored_spans,
        )
        log.info("access log: %d entries in %d batches", audit.stats.entries, audit.stats.batches)
    return 0


def main(argv: list[str] | None = None, prog: str = "scoregate-lineage") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        settings = LineageSettings(**{k: v for k, v in vars(args).items() if v is not None})
    except pydantic.ValidationError as e:
        print(f"{prog}: invalid settings: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return asyncio.run(serve(settings))
    except ConfigurationError as e:
        log.error("%s", e)
        return 2
    except LineageError as e:
        log.error("lineage store failed: %s", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The gateway's settings: ``SCOREGATE_GATEWAY_*`` environment, overridden by command-line flags."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """How one gateway process serves ScoringService."""

    model_config = SettingsConfigDict(env_prefix="SCOREGATE_GATEWAY_", extra="forbid")

    routes: Path = Field(
        description="Routing config (YAML): models, versions, aliases and decision points. "
        "Validated against the manifests before the gateway serves."
    )
    model_dir: Path = Field(
        description="Model repository holding every routed version's manifest.json; the "
        "gateway validates requests against these feature schemas."
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(
        default=8090,
        ge=0,
        le=65535,
        description="gRPC port; 0 picks a free one (the ready file tells which).",
    )
    otlp_endpoint: str = Field(
        default="",
        description="OTLP/gRPC endpoint (host:port) receiving decision spans, e.g. the lineage "
        "store or a collector; empty exports nothing.",
    )
    lineage_endpoint: str = Field(
        default="",
        description="The lineage store's gRPC address (host:port): routing changes are recorded "
        "there with RecordRouteChange; empty logs them only.",
    )
    otlp_schedule_delay_ms: int = Field(
        default=200, ge=1, description="Longest a decision span waits before it is exported."
    )
    outbox_dir: Path | None = Field(
        default=None,
        description="Durable outbox for decision records: a decision is answered only once its "
        "record is fsync'd here, and the outbox's sender delivers it to lineage_endpoint as "
        "OTLP until acknowledged. Unset: records ride on the decision span (can be dropped).",
    )
    outbox_max_bytes: int = Field(
        default=1024 * 1024 * 1024,
        ge=1,
        description="Bytes of records not yet acknowledged by the lineage store before new "
        "decisions are shed with RESOURCE_EXHAUSTED (records are never dropped).",
    )
    outbox_max_records: int = Field(
        default=1_000_000,
        ge=1,
        description="Records not yet acknowledged by the lineage store before new decisions "
        "are shed with RESOURCE_EXHAUSTED.",
    )
    outbox_segment_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=4096,
        description="Outbox segment file size; a fully acknowledged segment is deleted.",
    )
    outbox_preallocate: bool = Field(
        default=True,
        description="Zero-fill outbox segments a few MiB ahead of the writer, so that a group "
        "commit's fdatasync writes data only (about half the sync time on ext4 and XFS); false "
        "on copy-on-write filesystems (btrfs, ZFS), where it gains nothing.",
    )
    outbox_sync: Literal["process", "loop", "thread"] = Field(
        default="process",
        description="Where outbox appends are fdatasync'd: by a helper process while the event "
        "loop goes on (the loop writes; no GIL hand-offs), on the event loop once per pass, or by "
        "a writer thread (for disks whose fdatasync takes milliseconds).",
    )
    outbox_drain_s: float = Field(
        default=5.0,
        ge=0,
        description="On stop, seconds the outbox's sender gets to deliver its backlog (the "
        "rest is resent at the next start).",
    )
    ready_file: Path | None = Field(
        default=None,
        description="Written (atomically, one JSON line) once the gateway is serving and healthy.",
    )
    log_level: str = Field(default="INFO", description="Level for the gateway's logs.")
    telemetry_key_file: Path | None = Field(
        default=None,
        description="Secret (at least 16 bytes) keying the HMAC-SHA256 that stands in for "
        "entity keys and request ids on general-tracing spans; give every gateway the same one "
        "so the hashes match. Unset: a random key per process (logged), nothing reversible.",
    )
    grace_s: float = Field(
        default=10.0, ge=0, description="On SIGTERM, seconds in-flight calls get to finish."
    )
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="Score requests in flight per process before new ones are shed with "
        "RESOURCE_EXHAUSTED (at once, not queued); unset: no bound.",
    )
    max_pending_calls: int = Field(
        default=2,
        ge=1,
        description="With --max-in-flight: calls gRPC core may hold for the event loop before it "
        "refuses new ones itself (CANCELLED, before any Python runs; up to twice this many "
        "under bursts). A healthy loop picks calls up at once; a backlog means it is behind.",
    )
    shadow_max_in_flight: int = Field(
        default=64,
        ge=1,
        description="Shadow (mirrored) calls in flight per process; beyond it shadows are "
        "dropped and counted, never queued.",
    )
    approvals: Literal["off", "warn", "enforce"] = Field(
        default="off",
        description="Approvals check for decision points whose routes do not set `approvals`: "
        "enforce refuses a config giving traffic to a model version without a valid four-eyes "
        "approval in the lineage store (--lineage-endpoint), warn accepts and reports it, off "
        "does not ask.",
    )
    approvals_fail_open: bool = Field(
        default=False,
        description="When the lineage store cannot be read at a load or reload, accept the "
        "config with a warning instead of refusing it (fail closed, the default).",
    )
    approvals_max_age_s: float = Field(
        default=300.0,
        ge=0,
        description="How old a cached approval answer may be to stand in when the store cannot "
        "be read.",
    )
    reload_interval_s: float = Field(
        default=1.0,
        ge=0,
        description="How often the routing file (and its rules files) is checked for changes, "
        "ConfigMap symlink swaps included; 0 turns hot reload off.",
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port serving Prometheus metrics over HTTP (/metrics) on --host; 0: off.",
    )
    drain_delay_s: float = Field(
        default=0.0,
        ge=0,
        description="On SIGTERM, seconds the gateway keeps accepting calls while health says "
        "NOT_SERVING, so load balancers stop sending before the listener closes.",
    )
    batching: bool = Field(
        default=True,
        description="Micro-batching: Score calls in flight for the same model version and "
        "endpoint go to the runtime as one OIP v2 call with a batch dimension; a call with "
        "nothing else in flight is sent at once, alone.",
    )
    batch_max_size: int = Field(
        default=64, ge=1, le=1000, description="Most rows one micro-batched runtime call carries."
    )
    batch_max_wait_us: int = Field(
        default=2000,
        ge=0,
        le=100_000,
        description="How long a queued Score call waits at least (microseconds) for the runtime "
        "call ahead of it before its batch is sent anyway; while the runtime's calls are slower, "
        "up to twice their running mean, so that a saturated runtime is not sent more calls "
        "(the event loop's timers round up to about 1 ms).",
    )
    batch_hold_busy: float = Field(
        default=0.85,
        ge=0,
        le=1,
        description="When the gateway's event loop has been busy at least this share of the "
        "time (a saturated gateway), rows queued behind a returning runtime call wait up to "
        "--batch-max-wait-us more (or the rest of their patience, if shorter) instead of leaving "
        "at once, so that the runtime gets fewer, larger calls; the hold ends when the loop is "
        "0.1 below it. 0 disables.",
    )
    plaintext: bool = Field(
        default=False,
        description="Serve h2c without TLS: only for `make demo` and tests, or behind a proxy "
        "that terminates TLS; a warning is logged when the host is not loopback. Without it the "
        "gateway needs --tls-cert-file and --tls-key-file.",
    )
    tls_cert_file: Path | None = Field(
        default=None,
        description="The Score listener's certificate chain (PEM); re-read when it changes.",
    )
    tls_key_file: Path | None = Field(
        default=None, description="The listener certificate's private key (PEM, unencrypted)."
    )
    tls_ca_file: Path | None = Field(
        default=None,
        description="CA bundle (PEM) that callers' client certificates are verified against.",
    )
    tls_client_certificate: Literal["off", "optional", "required"] = Field(
        default="off",
        description="Client certificates: off (not asked for), required (mutual TLS: a "
        "handshake without one verified by --tls-ca-file fails). optional is refused: grpcio "
        "cannot ask for a certificate without requiring it (docs/security.md).",
    )
    certificate_identity: Literal["spiffe", "subject"] = Field(
        default="spiffe",
        description="Which part of a client certificate is the caller's principal: its one "
        "SPIFFE URI SAN, or the subject field --certificate-subject-field.",
    )
    certificate_subject_field: str = Field(
        default="CN",
        description="With --certificate-identity subject: CN, OU, O, UID or serialNumber.",
    )
    jwt_jwks_file: Path | None = Field(
        default=None,
        description="Bearer tokens: the issuer's public keys (a JWKS file), re-read when it "
        "changes. Set this or --jwt-jwks-url to accept `authorization: Bearer` tokens.",
    )
    jwt_jwks_url: str = Field(
        default="",
        description="Bearer tokens: the issuer's JWKS URL (https), fetched every 5 minutes and "
        "at once (at most every 10 s) for a token signed with an unknown key id.",
    )
    jwt_issuer: str = Field(default="", description="Bearer tokens: the required `iss`.")
    jwt_audience: str = Field(
        default="", description="Bearer tokens: the `aud` a token must name (this gateway)."
    )
    jwt_algorithms: str = Field(
        default="",
        description="Bearer tokens: the accepted signature algorithms, comma-separated (e.g. "
        "RS256,ES256); asymmetric only, `none` and HS* are never accepted. Required.",
    )
    jwt_leeway_s: float = Field(
        default=30.0,
        ge=0,
        le=300,
        description="Bearer tokens: clock skew allowed on exp and nbf, seconds.",
    )
    jwt_principal_claim: str = Field(
        default="sub", description="Bearer tokens: the claim that names the principal."
    )
    access_policy: Path | None = Field(
        default=None,
        description="The access policy (YAML; docs/security.md): who may score which decision "
        "points and pin versions. Deny by default; hot-reloaded every --reload-interval-s.",
    )
    open_access: bool = Field(
        default=False,
        description="Authenticate and authorise no one: every caller may score everything "
        "(`make demo`, tests). Without it the gateway needs --access-policy.",
    )
    runtime_tls: bool = Field(
        default=False, description="Call the model runtimes over TLS (else h2c)."
    )
    runtime_tls_ca_file: Path | None = Field(
        default=None,
        description="CA bundle verifying the runtimes' certificates; unset: the system's.",
    )
    runtime_tls_cert_file: Path | None = Field(
        default=None, description="This gateway's client certificate for runtimes that ask."
    )
    runtime_tls_key_file: Path | None = Field(
        default=None, description="The key of --runtime-tls-cert-file."
    )
    runtime_tls_server_name: str = Field(
        default="", description="The name runtimes' certificates carry, if not the host's."
    )
    lineage_tls: bool = Field(
        default=False,
        description="Reach the lineage store (outbox OTLP, route changes) over TLS (else h2c).",
    )
    lineage_tls_ca_file: Path | None = Field(
        default=None,
        description="CA bundle verifying the lineage store's certificate; unset: the system's.",
    )
    lineage_tls_cert_file: Path | None = Field(
        default=None, description="This gateway's client certificate for the lineage store."
    )
    lineage_tls_key_file: Path | None = Field(
        default=None, description="The key of --lineage-tls-cert-file."
    )
    lineage_tls_server_name: str = Field(
        default="", description="The name the store's certificate carries, if not the host's."
    )
    otlp_tls: bool = Field(
        default=False,
        description="Export general-tracing spans to --otlp-endpoint (a collector) over TLS "
        "(else h2c, with a warning when the collector is not on loopback).",
    )
    otlp_tls_ca_file: Path | None = Field(
        default=None,
        description="CA bundle verifying the collector's certificate; unset: the system's.",
    )
    otlp_tls_cert_file: Path | None = Field(
        default=None, description="This gateway's client certificate for the collector."
    )
    otlp_tls_key_file: Path | None = Field(
        default=None, description="The key of --otlp-tls-cert-file."
    )
    otlp_tls_server_name: str = Field(
        default="", description="The name the collector's certificate carries, if not the host's."
    )
    max_concurrent_rpcs: int | None = Field(
        default=None,
        ge=1,
        description="Calls served at once before new ones get RESOURCE_EXHAUSTED; unset: no cap.",
    )


def parse_settings(argv: Sequence[str] | None) -> GatewaySettings:
    """Flags (one per field, help from its description) over ``SCOREGATE_GATEWAY_*`` env."""
    parser = argparse.ArgumentParser(prog="scoregate-gateway", description=GatewaySettings.__doc__)
    for name, field in GatewaySettings.model_fields.items():
        parser.add_argument(
            "--" + name.replace("_", "-"), dest=name, default=None, help=field.description
        )
    given: dict[str, Any] = {
        k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None
    }
    return GatewaySettings(**given)

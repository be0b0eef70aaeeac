"""Lineage server settings: SCOREGATE_LINEAGE_* environment, overridden by command-line flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class LineageSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCOREGATE_LINEAGE_", use_attribute_docstrings=True, extra="forbid"
    )

    db_url: str = "sqlite:///lineage.db"
    """Where records are kept: sqlite:///relative.db, sqlite:////absolute.db, or
    postgresql://user[:password]@host:5432/dbname."""

    host: str = "127.0.0.1"
    """Interface to listen on; 0.0.0.0 in a container."""

    port: int = Field(default=4317, ge=0, le=65535)
    """gRPC port for OTLP, LineageService, health and reflection; 0 picks a free one."""

    ready_file: Path | None = None
    """Once serving, a one-line JSON {"grpc": "HOST:PORT", "pid": N} is written here atomically."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Logging threshold; logs go to stderr, one line per event."""

    grace_period_s: float = Field(default=10.0, ge=0)
    """On SIGTERM/SIGINT, how long in-flight calls (an Export being committed) may finish."""

    retention_months: int = Field(default=25, ge=1)
    """How long decisions are kept: `scoregate lineage purge` deletes what is older (Regulation B
    asks for 25 months, the EU AI Act at least 6 for credit scoring)."""

    checkpoint_file: Path | None = None
    """JSON-lines file the chain's checkpoints (size, head hash, time) are appended to; keep it
    outside the database (another volume, or shipped to WORM storage). None: no export."""

    checkpoint_interval_s: float = Field(default=60.0, gt=0)
    """How often a checkpoint is appended when the chain has grown (and once at shutdown)."""

    verify_interval_s: float = Field(default=0.0, ge=0)
    """How often the whole chain (and the checkpoints of --checkpoint-file) is verified in the
    background, its result exported on /metrics for the chain alert; 0: never (run `scoregate
    lineage verify` instead). A verification reads every chained entry once."""

    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of /metrics (Prometheus: drift per decision point, version, arm and measure over
    the trailing hour and day); unset: no metrics; 0 picks a free one (in the ready file)."""

    metrics_refresh_s: float = Field(default=60.0, gt=0)
    """How often the exported drift is recomputed from the counters."""

    adverse_outcomes: str = ""
    """Per decision point, the outcome labels that count as adverse, for the AUC and KS on
    /metrics: ``card-fraud=confirmed_fraud,credit-risk=default_90d|charged_off``. A decision
    point not named exports no performance."""

    performance_window_days: int = Field(default=90, ge=1, le=3650)
    """The trailing period of decisions whose outcomes the exported AUC and KS are over."""

    @field_validator("adverse_outcomes")
    @classmethod
    def _adverse_outcomes_parse(cls, value: str) -> str:
        parse_adverse_outcomes(value)
        return value

    def adverse(self) -> dict[str, frozenset[str]]:
        return parse_adverse_outcomes(self.adverse_outcomes)

    web_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the read-only risk page (search, decision pages, serving timeline, drift) for
    risk and compliance; unset: no page; 0 picks a free one (in the ready file). Served with
    the listener's TLS certificate, tokens and access policy (docs/security.md)."""

    web_host: str = "127.0.0.1"
    """Interface the risk page listens on. Under open access a host other than loopback is
    refused unless --web-allow-open is set."""

    web_allow_open: bool = False
    """Let the risk page listen beyond loopback under open access (anyone who reaches the
    port reads every decision): only behind a proxy that authenticates."""

    web_model_dir: Path | None = None
    """The model repository (the artifacts by sha256) the page's replay button re-scores
    with; unset: the page says replay is not available in this deployment."""

    entity_key_file: Path | None = None
    """Secret (at least 16 bytes) keying the HMAC-SHA256 that replaces entity keys of the
    decision points in --pseudonymise-entities at ingest. Keep it: without it the pseudonyms
    cannot be found again from a customer's key (docs/security.md)."""

    pseudonymise_entities: str = ""
    """Decision points, comma-separated, whose entity keys are stored as keyed hashes (`*`: all
    of them); empty: every key is stored as sent. Needs --entity-key-file."""

    plaintext: bool = False
    """Serve h2c without TLS: only for `make demo` and tests, or behind a proxy that terminates
    TLS; a warning is logged when the host is not loopback. Without it the store needs
    --tls-cert-file and --tls-key-file."""

    tls_cert_file: Path | None = None
    """The listener's certificate chain (PEM); re-read when it changes (no restart)."""

    tls_key_file: Path | None = None
    """The listener certificate's private key (PEM, unencrypted)."""

    tls_ca_file: Path | None = None
    """CA bundle (PEM) that callers' client certificates are verified against."""

    tls_client_certificate: Literal["off", "optional", "required"] = "off"
    """Client certificates: off (not asked for), required (mutual TLS: a handshake without one
    verified by --tls-ca-file fails). optional is refused: grpcio cannot ask for a certificate
    without requiring it (docs/security.md)."""

    certificate_identity: Literal["spiffe", "subject"] = "spiffe"
    """Which part of a client certificate is the caller's principal: its one SPIFFE URI SAN, or
    the subject field --certificate-subject-field."""

    certificate_subject_field: str = "CN"
    """With --certificate-identity subject: CN, OU, O, UID or serialNumber."""

    jwt_jwks_file: Path | None = None
    """Bearer tokens: the issuer's public keys (a JWKS file), re-read when it changes. Set this
    or --jwt-jwks-url to accept `authorization: Bearer` tokens."""

    jwt_jwks_url: str = ""
    """Bearer tokens: the issuer's JWKS URL (https), fetched every 5 minutes and at once (at
    most every 10 s) for a token signed with an unknown key id."""

    jwt_issuer: str = ""
    """Bearer tokens: the required `iss`."""

    jwt_audience: str = ""
    """Bearer tokens: the `aud` a token must name (this store)."""

    jwt_algorithms: str = ""
    """Bearer tokens: the accepted signature algorithms, comma-separated (e.g. RS256,ES256);
    asymmetric only, `none` and HS* are never accepted. Required with tokens."""

    jwt_leeway_s: float = Field(default=30.0, ge=0, le=300)
    """Bearer tokens: clock skew allowed on exp and nbf, seconds."""

    jwt_principal_claim: str = "sub"
    """Bearer tokens: the claim that names the principal."""

    access_policy: Path | None = None
    """The access policy (YAML, the gateway's file; docs/security.md): who may call each
    LineageService method group and send decision records (`ingest`). Deny by default;
    re-read every --access-policy-interval-s."""

    access_policy_interval_s: float = Field(default=2.0, gt=0)
    """How often the access policy file is checked for a change."""

    open_access: bool = False
    """Authenticate and authorise no one: every caller may do everything, overrides keep the
    reviewer the request names (`make demo`, tests). Without it the store needs
    --access-policy. Calls are logged in the access log either way."""

    access_log_flush_s: float = Field(default=0.05, gt=0)
    """The access log is written in batches: at most this long after a call (docs/lineage.md)."""


def parse_adverse_outcomes(value: str) -> dict[str, frozenset[str]]:
    """``point=label|label,point=label`` as {point: labels}; ValueError naming the bad item."""
    out: dict[str, frozenset[str]] = {}
    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue
        point, sep, labels = item.partition("=")
        names = frozenset(label.strip() for label in labels.split("|") if label.strip())
        if not sep or not point.strip() or not names:
            raise ValueError(f"adverse_outcomes: {item!r} is not decision_point=label[|label...]")
        if point.strip() in out:
            raise ValueError(f"adverse_outcomes: {point.strip()!r} is named twice")
        out[point.strip()] = names
    return out

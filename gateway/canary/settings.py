"""``scoregate canary`` settings: ``SCOREGATE_CANARY_*`` environment, overridden by flags."""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.canary.errors import PlanError


class LineageClientSettings(BaseSettings):
    """How the controller reaches the lineage store (docs/security.md)."""

    model_config = SettingsConfigDict(env_prefix="SCOREGATE_CANARY_", extra="forbid")

    lineage: str = Field(description="The lineage store's gRPC address (host:port).")
    lineage_ca_file: Path | None = Field(
        default=None, description="CA bundle verifying the store: set it to use TLS."
    )
    lineage_cert_file: Path | None = Field(
        default=None, description="Client certificate, for a store requiring mutual TLS."
    )
    lineage_key_file: Path | None = Field(default=None, description="Its private key.")
    lineage_server_name: str = Field(
        default="", description="The name the store's certificate carries, if not the host."
    )
    lineage_token_file: Path | None = Field(
        default=None,
        description="A file holding a bearer token for the store (needs TLS); re-read each run.",
    )


class CanaryRunSettings(LineageClientSettings):
    """What ``scoregate canary run`` ramps, and where the routes are."""

    plan: Path = Field(description="The canary plan (YAML, docs/model-risk.md).")
    routes_file: Path | None = Field(
        default=None,
        description="The gateway's routes file, rewritten atomically (local gateways).",
    )
    routes_configmap: str = Field(
        default="",
        description="The routes ConfigMap as namespace/name, patched through the Kubernetes "
        "API (in a cluster). Exactly one of routes_file and routes_configmap.",
    )
    routes_configmap_key: str = Field(
        default="routes.yaml", description="The ConfigMap key holding the routes file."
    )
    kube_api_url: str = Field(
        default="",
        description="The Kubernetes API server's URL; empty: the pod's in-cluster configuration.",
    )
    kube_token_file: Path | None = Field(
        default=None, description="With kube_api_url: a bearer token file for the API server."
    )
    kube_ca_file: Path | None = Field(
        default=None, description="With kube_api_url: the CA bundle verifying the API server."
    )
    started_by: str = Field(
        default_factory=getpass.getuser,
        description="Who starts the run, as recorded; the store records the authenticated "
        "principal instead when the controller authenticates.",
    )
    apply_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a written weight may take to be reported in force by a gateway "
        "(a ConfigMap reaches the pods' files within the kubelet's sync period, about a minute).",
    )

    @model_validator(mode="after")
    def _one_routes_location(self) -> Self:
        if (self.routes_file is None) == (not self.routes_configmap):
            raise ValueError("set exactly one of routes_file and routes_configmap")
        if self.routes_configmap and self.routes_configmap.count("/") != 1:
            raise ValueError("routes_configmap: namespace/name, e.g. scoring/scoregate-gateway")
        return self


def parse(cls: type[LineageClientSettings], prog: str, argv: Sequence[str]) -> Any:
    """Flags (one per field, help from its description) over the environment."""
    parser = argparse.ArgumentParser(prog=prog, description=cls.__doc__)
    for name, field in cls.model_fields.items():
        parser.add_argument(
            "--" + name.replace("_", "-"), dest=name, default=None, help=field.description
        )
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    try:
        return cls(**given)
    except ValidationError as e:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or 'settings'}: "
            + err["msg"].removeprefix("Value error, ")
            for err in e.errors()
        ]
        raise PlanError(f"{prog}: invalid settings:\n" + "\n".join(lines)) from None

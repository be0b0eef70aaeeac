"""The runtime's settings: ``SCOREGATE_RUNTIME_*`` environment, overridden by command-line flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RuntimeSettings(BaseSettings):
    """How one runtime process serves a model repository."""

    model_config = SettingsConfigDict(env_prefix="SCOREGATE_RUNTIME_", extra="forbid")

    model_dir: Path = Field(
        description="Model repository: ROOT/<name>/<version>/{model.onnx, manifest.json}, "
        "or one version folder (KServe storageUri). Every model in it must load."
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address advertised in the ready file and used for the readiness probe. "
        "KServe 0.21 itself listens on all interfaces.",
    )
    grpc_port: int = Field(default=8081, ge=1, le=65535, description="OIP v2 gRPC port.")
    http_port: int = Field(default=8080, ge=1, le=65535, description="KServe REST port.")
    ready_file: Path | None = Field(
        default=None,
        description="Written (atomically, one JSON line) once gRPC answers ServerReady and every "
        "model is ready.",
    )
    log_level: str = Field(default="INFO", description="Level for scoregate and KServe logs.")
    max_threads: int = Field(
        default=4, ge=1, description="KServe's gRPC server thread pool (synchronous handlers)."
    )
    inference_threads: int = Field(
        default=2,
        ge=1,
        description="Threads running onnxruntime sessions off the event loop; one per core.",
    )
    inline_max_rows: int = Field(
        default=16,
        ge=0,
        description="Calls of at most this many rows run onnxruntime on the event loop (a few "
        "rows take less than a hand-off to a thread); larger ones on the inference threads. "
        "0: every call on the threads.",
    )
    grace_period_s: int = Field(
        default=5, ge=0, description="On SIGTERM, seconds in-flight calls get to finish."
    )
    ready_timeout_s: float = Field(
        default=30.0, gt=0, description="Give up (and exit non-zero) if not ready by then."
    )

"""Lineage server settings: SCOREGATE_LINEAGE_* environment, overridden by command-line flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LineageSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCOREGATE_LINEAGE_", use_attribute_docstrings=True, extra="forbid"
    )

    db_url: str = "sqlite:///lineage.db"
    """Where records are kept: sqlite:///relative.db or sqlite:////absolute.db."""

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

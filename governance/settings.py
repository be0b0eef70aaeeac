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

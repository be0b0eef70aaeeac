"""Runs a model repository on ``kserve.ModelServer``: load everything or refuse to start.

Imports ``kserve``, which parses ``sys.argv`` at import time: only ``runtimes.server.main`` imports
this module, after it has parsed its own flags and cleared ``sys.argv``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import grpc
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from runtimes.errors import ModelLoadError, Unsupported
from runtimes.manifest import find_model_folders
from runtimes.oip_service import RuntimeModelServer
from runtimes.onnx_model import OnnxModel, runtime_instance
from runtimes.settings import RuntimeSettings

log = logging.getLogger("scoregate.runtime")

# The listener appears moments after start(); retry connecting quickly instead of gRPC's 1 s.
_PROBE_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
]


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CALLER_ERRORS = (InvalidInput, ModelNotFound, Unsupported)


class _DropCallerTracebacks(logging.Filter):
    """KServe logs a traceback for every malformed request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], _CALLER_ERRORS):
            # The caller already got INVALID_ARGUMENT / NOT_FOUND with the reason: one line
            # without a traceback is enough.
            message, reason = record.getMessage(), str(record.exc_info[1])
            record.msg = message if reason in message else f"{message} {reason}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging(level: str) -> None:
    """One line per event on stderr, for our loggers and KServe's/uvicorn's alike."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    kserve_logger = logging.getLogger("kserve")
    # A handler on "kserve" stops ModelServer from installing its own logging configuration.
    kserve_logger.handlers[:] = [logging.NullHandler()]
    kserve_logger.propagate = True
    kserve_logger.addFilter(_DropCallerTracebacks())
    # Building a log record costs CPU even when a filter then drops it (docs/performance-log.md),
    # so below DEBUG KServe logs from WARNING up: its INFO lines are start-up ones, which our own
    # "loaded ..." and "ready: ..." lines already say. (Its per-call gRPC logging interceptor is
    # not installed at all: runtimes.oip_service.)
    if logging.getLevelName(level.upper()) != logging.DEBUG:
        kserve_logger.setLevel(logging.WARNING)
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def load_models(
    model_dir: Path, executor: Executor, instance: str, inline_max_rows: int = 0
) -> list[OnnxModel]:
    """Every model version under ``model_dir``, loaded; any failure raises ModelLoadError."""
    folders = find_model_folders(model_dir)
    if not folders:
        raise ModelLoadError(f"{model_dir}: no manifest.json found; nothing to serve")
    models: list[OnnxModel] = []
    for folder in folders:
        model = OnnxModel.from_folder(folder, executor, instance, inline_max_rows)
        if any(m.name == model.name for m in models):
            raise ModelLoadError(f"{folder}: duplicate model version {model.name}")
        model.load()
        log.info("loaded %s sha256=%s", model.name, model.manifest.artifact_sha256)
        models.append(model)
    return models


def write_ready_file(path: Path, content: dict[str, object]) -> None:
    """One JSON line, written to a temporary file then renamed, so readers never see half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content) + "\n")
    os.replace(tmp, path)


class ReadinessProbe(threading.Thread):
    """Asks the running server over gRPC until it is ready, then writes the ready file.

    It probes the real listener, not the in-process state, so the ready file means a client can
    connect and score. If the server is not ready in time the process is told to stop.
    """

    def __init__(self, settings: RuntimeSettings, model_names: list[str]) -> None:
        super().__init__(name="readiness-probe", daemon=True)
        self._settings = settings
        self._models = model_names
        self._stop = threading.Event()
        self.timed_out = False

    @property
    def address(self) -> str:
        return f"{self._settings.host}:{self._settings.grpc_port}"

    def stop(self) -> None:
        self._stop.set()

    def _ready(self, stub: pb_grpc.GRPCInferenceServiceStub) -> bool:
        try:
            if not stub.ServerReady(pb.ServerReadyRequest(), timeout=1.0).ready:
                return False
            return all(
                stub.ModelReady(pb.ModelReadyRequest(name=name), timeout=1.0).ready
                for name in self._models
            )
        except grpc.RpcError:
            return False

    def run(self) -> None:
        deadline = time.monotonic() + self._settings.ready_timeout_s
        with grpc.insecure_channel(self.address, options=_PROBE_CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            while not self._stop.is_set():
                if self._ready(stub):
                    self._announce()
                    return
                if time.monotonic() > deadline:
                    self.timed_out = True
                    log.error(
                        "not ready on %s after %.0f s", self.address, self._settings.ready_timeout_s
                    )
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                self._stop.wait(0.05)

    def _announce(self) -> None:
        s = self._settings
        log.info(
            "ready: grpc %s, http %s:%d, models %s", self.address, s.host, s.http_port, self._models
        )
        if s.ready_file is not None:
            write_ready_file(
                s.ready_file,
                {
                    "grpc": self.address,
                    "http": f"{s.host}:{s.http_port}",
                    "models": self._models,
                    "pid": os.getpid(),
                },
            )


def serve(settings: RuntimeSettings) -> int:
    """Loads the repository and serves it until SIGTERM/SIGINT; returns the exit code."""
    executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="onnxruntime")
    try:
        models = load_models(
            settings.model_dir, executor, runtime_instance(), settings.inline_max_rows
        )
    except ModelLoadError as e:
        log.error("refusing to start: %s", e)
        executor.shutdown()
        return 1
    server = RuntimeModelServer(
        http_port=settings.http_port,
        grpc_port=settings.grpc_port,
        max_threads=settings.max_threads,
        enable_latency_logging=False,
        grace_period=settings.grace_period_s,
    )
    probe = ReadinessProbe(settings, [m.name for m in models])
    probe.start()
    try:
        server.start(models)
    finally:
        probe.stop()
        executor.shutdown(wait=False, cancel_futures=True)
    return 1 if probe.timed_out else 0

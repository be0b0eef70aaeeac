"""A real MLServer for the tests: its own interpreter, built once and kept, and a process on
loopback serving scoregate's demo models with the runtime in ``mlserver/scoregate_onnx.py``.

kserve and mlserver pin conflicting libraries, so MLServer gets a venv of its own, built from the
pinned ``mlserver/requirements.txt`` with pip from PyPI, under the repository's work directory
(``.scoregate/mlserver-venv``, or the directory named by ``SCOREGATE_TEST_MLSERVER_VENV``). It is
rebuilt when the pins change; a lock keeps two test runs from building it at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from loadtests.local.topology import ManagedProcess, free_port
from oip.v2 import grpc_predict_v2_pb2 as pb
from runtimes.manifest import CategoryFeature, Manifest

HERE = Path(__file__).parent / "mlserver"
REQUIREMENTS = HERE / "requirements.txt"
REPO = Path(__file__).resolve().parents[2]
VENV_SETTING = "SCOREGATE_TEST_MLSERVER_VENV"
DIGEST_PREFIX = "artifact_sha256:"
RUNTIME = "scoregate_onnx.ScoregateOnnx"


class MLServerError(Exception):
    """MLServer could not be installed or did not start."""


def venv_dir() -> Path:
    return Path(os.environ.get(VENV_SETTING) or REPO / ".scoregate" / "mlserver-venv")


def ensure_venv() -> tuple[Path, float]:
    """MLServer's ``mlserver`` command, and the seconds spent installing it (0 when kept)."""
    venv = venv_dir()
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = venv / ".requirements-sha256"
    command = venv / "bin" / "mlserver"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if command.exists() and stamp.exists() and stamp.read_text() == want:
            return command, 0.0
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [*pip, "install", "--quiet", "-r", str(REQUIREMENTS)],
        ]
        for argv in steps:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
                raise MLServerError(f"{' '.join(argv)} failed ({done.returncode}):\n{tail}")
        stamp.write_text(want)
        return command, time.monotonic() - started


@dataclass(frozen=True)
class ServedModel:
    """One model MLServer serves: a demo model's artifact under a name and version of its own."""

    manifest: Manifest
    artifact: Path
    name: str
    version: str = ""
    declared_sha256: str | None = None
    """The ``artifact_sha256:`` entry of the model settings' ``versions``; None for none."""
    report_sha256: bool = False
    """Name the artifact's sha256 on every answer (the ``artifact_sha256`` response parameter)."""


def _datatype(feature: object) -> str:
    return "BYTES" if isinstance(feature, CategoryFeature) else "FP32"


def _model_settings(model: ServedModel) -> dict[str, object]:
    m = model.manifest
    inputs = [{"name": f.name, "datatype": _datatype(f), "shape": [-1, 1]} for f in m.features]
    parameters: dict[str, object] = {"uri": str(model.artifact)}
    if model.version:
        parameters["version"] = model.version
    if model.report_sha256:
        parameters["extra"] = {"report_artifact_sha256": True}
    declared = model.declared_sha256
    return {
        "name": model.name,
        "implementation": RUNTIME,
        "parameters": parameters,
        "versions": [f"{DIGEST_PREFIX}{declared}"] if declared else [],
        "inputs": inputs,
        "outputs": [
            {"name": m.outputs.label, "datatype": "INT64", "shape": [-1]},
            {"name": m.outputs.probabilities, "datatype": "FP32", "shape": [-1, 2]},
        ],
    }


def start_mlserver(
    command: Path,
    models: Sequence[ServedModel],
    workdir: Path,
    grpc_port: int = 0,
    timeout: float = 90.0,
) -> ManagedProcess:
    """MLServer on loopback serving ``models``, once it reports them all ready; on free ports, or
    gRPC on ``grpc_port`` (a server replaced behind the same address)."""
    repository = workdir / "repository"
    repository.mkdir(parents=True, exist_ok=True)
    grpc_port = grpc_port or free_port()
    settings = {
        "host": "127.0.0.1",
        "grpc_port": grpc_port,
        "http_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": 0,
        "load_models_at_startup": True,
    }
    (repository / "settings.json").write_text(json.dumps(settings))
    for i, model in enumerate(models):
        folder = repository / f"model-{i}"
        folder.mkdir(exist_ok=True)
        (folder / "model-settings.json").write_text(json.dumps(_model_settings(model)))
    log_path = workdir / "mlserver.log"
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    env.pop("VIRTUAL_ENV", None)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            [str(command), "start", str(repository)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=workdir,
        )
    address = f"127.0.0.1:{grpc_port}"
    proc = ManagedProcess("mlserver", popen, {"grpc": address}, log_path)
    end = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        ready = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelReady",
            request_serializer=pb.ModelReadyRequest.SerializeToString,
            response_deserializer=pb.ModelReadyResponse.FromString,
        )
        waiting = list(models)
        while waiting and time.monotonic() < end:
            if popen.poll() is not None:
                raise MLServerError(f"mlserver exited with {popen.returncode}:\n{proc.log_tail()}")
            m = waiting[0]
            try:
                if ready(pb.ModelReadyRequest(name=m.name, version=m.version), timeout=1.0).ready:
                    waiting.pop(0)
                    continue
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    if waiting:
        proc.kill()
        raise MLServerError(f"mlserver not ready within {timeout:.0f} s:\n{proc.log_tail()}")
    return proc

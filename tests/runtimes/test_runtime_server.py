"""The real runtime process, called over OIP v2 gRPC with KServe's own client."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest
from kserve import InferenceGRPCClient
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from kserve.protocol.infer_type import InferInput, InferResponse
from support.oip import Row, infer_request

from loadtests.local.topology import ManagedProcess, entry_point, free_port, start_process
from runtimes.graph import open_session, run_rows
from runtimes.manifest import ARTIFACT_FILE, CategoryFeature, Manifest
from runtimes.training.datasets import sample_requests

SERVED = ("card-fraud-v1", "card-fraud-v2", "churn-v1", "credit-risk-v1", "trade-anomaly-v1")


@pytest.fixture
async def client(runtime: ManagedProcess) -> AsyncIterator[InferenceGRPCClient]:
    # No retries: every call the test makes is exactly one call to the runtime.
    async with InferenceGRPCClient(
        runtime.address, channel_args=[("grpc.enable_retries", 0)], retries=0, timeout=10
    ) as c:
        yield c


def in_process_probabilities(
    m: Manifest, model_dir: Path, rows: Sequence[Row], output: str = "probabilities"
) -> np.ndarray:
    session = open_session(str(model_dir / m.name / m.version / ARTIFACT_FILE))
    feed = {}
    for f in m.features:
        if isinstance(f, CategoryFeature):
            feed[f.name] = np.array([[row[f.name]] for row in rows], dtype=object)
        else:
            feed[f.name] = np.array([[float(row[f.name])] for row in rows], dtype=np.float32)
    (scores,) = run_rows(session, [output], feed)
    return scores


def probabilities_of(response: InferResponse) -> np.ndarray:
    output = response.get_output_by_name("probabilities")
    assert output is not None and output.datatype == "FP32"
    return np.asarray(output.as_numpy())


async def test_server_and_every_model_are_live_and_ready(client: InferenceGRPCClient) -> None:
    assert await client.is_server_live()
    assert await client.is_server_ready()
    for name in SERVED:
        assert await client.is_model_ready(name), name


@pytest.mark.parametrize("served", SERVED)
async def test_metadata_lists_every_feature_input(
    served: str, runtime: ManagedProcess, manifests: dict[str, Manifest]
) -> None:
    async with grpc.aio.insecure_channel(runtime.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name=served), timeout=5)
    expected = [
        (f.name, "BYTES" if isinstance(f, CategoryFeature) else "FP32", [-1, 1])
        for f in manifests[served].features
    ]
    assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == expected
    assert {(o.name, o.datatype, tuple(o.shape)) for o in meta.outputs} == {
        ("probabilities", "FP32", (-1, 2)),
        ("label", "INT64", (-1,)),
        ("contributions", "FP32", (-1, len(manifests[served].features))),
    }


@pytest.mark.parametrize("served", SERVED)
@pytest.mark.parametrize(("rows", "binary"), [(64, True), (64, False), (1, True)])
async def test_infer_equals_onnxruntime_in_process(
    served: str,
    rows: int,
    binary: bool,
    client: InferenceGRPCClient,
    runtime: ManagedProcess,
    manifests: dict[str, Manifest],
    model_dir: Path,
) -> None:
    m = manifests[served]
    batch = sample_requests(m.name, rows, seed=101)
    response = await client.infer(infer_request(m, batch, binary=binary))
    got = probabilities_of(response)
    assert got.dtype == np.float32 and got.shape == (rows, 2)
    assert np.array_equal(got, in_process_probabilities(m, model_dir, batch))
    label = response.get_output_by_name("label")
    assert label is not None and label.datatype == "INT64"
    assert np.array_equal(label.as_numpy(), in_process_probabilities(m, model_dir, batch, "label"))
    if m.name != "trade-anomaly":
        # A classifier's label is its likelier class; the anomaly forest's is its own cut.
        assert np.array_equal(label.as_numpy(), (got[:, 1] > 0.5).astype(np.int64))
    assert response.model_name == served and response.model_version == m.version
    params = response.parameters
    assert params is not None
    assert params["artifact_sha256"].string_param == m.artifact_sha256
    assert params["runtime_instance"].string_param.endswith(f":{runtime.popen.pid}")


async def test_missing_input_is_invalid_argument_naming_it(
    client: InferenceGRPCClient, manifests: dict[str, Manifest]
) -> None:
    m = manifests["card-fraud-v1"]
    request = infer_request(m, sample_requests(m.name, 2, seed=5), skip="channel")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.infer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'channel'" in str(caught.value.details())


@pytest.mark.parametrize(
    ("name", "datatype", "shape", "data", "needle"),
    [
        ("merchant_category", "FP32", [1, 1], [1.0], "datatype FP32"),
        ("amount", "FP32", [1], [1.0], "shape [1]"),
        ("amount", "FP32", [2, 1], [1.0], "does not match shape"),
        ("channel", "BYTES", [1, 1], ["teleport"], "unknown categories"),
        ("amount", "FP32", [1, 1], [float("nan")], "NaN"),
        # NaN is distance_from_home_km's declared missing value; infinity is not.
        ("distance_from_home_km", "FP32", [1, 1], [float("inf")], "infinity"),
        # The empty string is a missing category only where the manifest declares one.
        ("channel", "BYTES", [1, 1], [""], "unknown categories"),
    ],
)
async def test_malformed_input_is_invalid_argument_naming_it(
    name: str,
    datatype: str,
    shape: list[int],
    data: list[object],
    needle: str,
    client: InferenceGRPCClient,
    manifests: dict[str, Manifest],
) -> None:
    m = manifests["card-fraud-v1"]
    request = infer_request(m, sample_requests(m.name, 1, seed=5), binary=False, skip=name)
    request.inputs.append(InferInput(name, shape, datatype, data))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.infer(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = str(caught.value.details())
    assert f"'{name}'" in details and needle in details


@pytest.mark.parametrize("served", ["card-fraud-v1", "card-fraud-v2"])
async def test_a_declared_missing_value_is_scored_by_the_graph(
    served: str, client: InferenceGRPCClient, manifests: dict[str, Manifest], model_dir: Path
) -> None:
    m = manifests[served]
    rows = sample_requests(m.name, 4, seed=6)
    for row in rows[:2]:
        row["distance_from_home_km"] = float("nan")
    response = await client.infer(infer_request(m, rows))
    got = probabilities_of(response)
    assert np.array_equal(got, in_process_probabilities(m, model_dir, rows))
    assert np.isfinite(got).all()


async def test_single_row_latency(
    client: InferenceGRPCClient, manifests: dict[str, Manifest]
) -> None:
    """Not a target: a figure for the report (p50 over 200 sequential single-row calls)."""
    m = manifests["card-fraud-v1"]
    request = infer_request(m, sample_requests(m.name, 1, seed=9))
    for _ in range(20):
        await client.infer(request)
    samples = []
    for _ in range(200):
        started = time.perf_counter()
        await client.infer(request)
        samples.append(time.perf_counter() - started)
    p50 = statistics.median(samples) * 1e3
    p99 = statistics.quantiles(samples, n=100)[98] * 1e3
    print(f"\nsingle-row ModelInfer via InferenceGRPCClient: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    assert p50 < 1000


def _runtime_argv(model_dir: Path) -> list[str]:
    return [
        *entry_point("scoregate-runtime"),
        "--model-dir", str(model_dir),
        "--host", "127.0.0.1",
        "--grpc-port", str(free_port()),
        "--http-port", str(free_port()),
    ]  # fmt: skip


def test_tampered_artifact_stops_the_runtime(model_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for p in model_dir.rglob("*"):
        if p.is_file():
            (repo / p.relative_to(model_dir)).parent.mkdir(parents=True, exist_ok=True)
            (repo / p.relative_to(model_dir)).write_bytes(p.read_bytes())
    artifact = repo / "card-fraud" / "2" / ARTIFACT_FILE
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    ready = tmp_path / "ready.json"
    done = subprocess.run(
        [*_runtime_argv(repo), "--ready-file", str(ready)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert not ready.exists()
    assert str(artifact) in done.stderr and "card-fraud-v2" in done.stderr
    assert "does not match manifest" in done.stderr and "refusing" in done.stderr


def test_empty_repository_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        _runtime_argv(tmp_path), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0 and "no manifest.json" in done.stderr


def test_sigterm_exits_cleanly(model_dir: Path, tmp_path: Path) -> None:
    proc = start_process("runtime", _runtime_argv(model_dir), tmp_path)
    assert proc.info["models"] == list(SERVED) and proc.info["pid"] == proc.popen.pid
    assert proc.info["grpc"].startswith("127.0.0.1:")
    started = time.monotonic()
    os.kill(proc.popen.pid, signal.SIGTERM)
    try:
        code = proc.popen.wait(timeout=10)
    finally:
        proc.kill()
    print(f"\nSIGTERM -> exit {code} in {time.monotonic() - started:.2f} s")
    assert code == 0, proc.log_tail()


def test_help_lists_the_flags() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runtimes.server", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "--model-dir" in done.stdout


async def test_the_log_has_no_line_per_call(
    client: InferenceGRPCClient, runtime: ManagedProcess, manifests: dict[str, Manifest]
) -> None:
    """KServe logs every gRPC call at INFO; building those records cost ~50-90 us of CPU per
    call before they were dropped, so KServe's logger starts at WARNING (below DEBUG)."""
    m = manifests["card-fraud-v1"]
    for i in range(20):
        await client.infer(infer_request(m, sample_requests("card-fraud", 1, seed=i)))
    log = runtime.log_tail(lines=100_000)
    assert "scoregate.runtime: ready: grpc" in log
    assert "grpc method" not in log
    assert "INFO kserve:" not in log

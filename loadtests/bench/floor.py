"""The floor under every path: the card-fraud model run by onnxruntime in this process.

The session is configured like the runtime's (one intra-op and one inter-op thread), so a row's
cost here is what the runtime pays for the model itself; all the rest of a call is transport.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from runtimes.manifest import BooleanFeature, CategoryFeature, Manifest


def session(artifact: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])


def feeds(manifest: Manifest, rows: list[dict[str, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    """One [N, 1] input per feature, as the ONNX graph convention says."""
    out: dict[str, np.ndarray[Any, Any]] = {}
    for feature in manifest.features:
        values = [row[feature.name] for row in rows]
        if isinstance(feature, CategoryFeature):
            out[feature.name] = np.array(values, dtype=object).reshape(-1, 1)
        elif isinstance(feature, BooleanFeature):
            flags = [float(bool(v)) for v in values]
            out[feature.name] = np.array(flags, np.float32).reshape(-1, 1)
        else:
            out[feature.name] = np.array(values, np.float32).reshape(-1, 1)
    return out


def _loop(
    sess: ort.InferenceSession, inputs: list[dict[str, Any]], calls: int, seconds: float
) -> tuple[list[float], float, float]:
    """Latencies (µs), wall seconds and this process's CPU seconds over a bounded loop."""
    latencies: list[float] = []
    clock = time.perf_counter
    cpu0, start = time.process_time(), clock()
    deadline = start + seconds
    for i in range(calls):
        t = clock()
        sess.run(None, inputs[i % len(inputs)])
        now = clock()
        latencies.append((now - t) * 1e6)
        if now > deadline:
            break
    return latencies, clock() - start, time.process_time() - cpu0


def measure(
    artifact: Path, manifest: Manifest, rows: list[dict[str, Any]], calls: int, seconds: float
) -> list[dict[str, Any]]:
    """Two results in the loadgen's shape: one row per call, then batches of 1,000 rows."""
    sess = session(artifact)
    singles = [feeds(manifest, [row]) for row in rows[:256]]
    batch = 1000
    batches = [feeds(manifest, [rows[(b + i) % len(rows)] for i in range(batch)]) for b in (0, 1)]
    results = []
    for label, inputs, per_call, n in (
        ("onnx-row", singles, 1, calls),
        ("onnx-batch", batches, batch, max(20, calls // 100)),
    ):
        _loop(sess, inputs, max(10, n // 10), seconds / 10)  # warm-up
        latencies, wall, cpu = _loop(sess, inputs, n, seconds)
        lat = sorted(latencies)
        done = len(lat)
        summary = {
            "calls": done,
            "rows": done * per_call,
            "errors": {},
            "seconds": wall,
            "calls_per_s": done / wall,
            "rows_per_s": done * per_call / wall,
            "p50_us": lat[len(lat) // 2],
            "p90_us": lat[min(len(lat) - 1, int(0.90 * len(lat)))],
            "p99_us": lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "error_p99_us": 0.0,
            "server_cpu_s": cpu,
            "server_cpu_us_per_row": cpu * 1e6 / (done * per_call),
        }
        results.append(
            {
                "label": label,
                "rows_per_call": per_call,
                "concurrency": 1,
                "sequential": summary,
                # In process there is no queue to fill: the loop is the saturation.
                "saturation": summary,
                "sequential_latencies_us": latencies,
            }
        )
    return results

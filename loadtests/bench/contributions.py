"""What explaining costs beside scoring, per row, for each model of a repository, in process.

    python -m loadtests.bench.contributions [--model-dir .scoregate/models] [--seconds 0.5]

For calls of 1, 32 and 1,000 rows (sample requests, absent features included) it prints the
microseconds per row of: scoring (``run_rows`` on the runtime's session), the preprocessing run
the explainer adds (the graph up to the scoring node), and the attribution itself (TreeSHAP or
scorecard points), each timed after a warm-up on one thread; and, per model, the load time and
the size of what was precomputed. Without ``--model-dir`` the demo models are built into a
temporary folder first. Not a test: its figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from runtimes.explain import Explainer
from runtimes.explain.treeshap import TreeShap
from runtimes.graph import open_session, run_rows
from runtimes.manifest import Manifest, absent_value, find_model_folders, read_manifest
from runtimes.training.build import build_all, onnx_inputs
from runtimes.training.datasets import sample_requests

BATCHES = (1, 32, 1000)


def _per_row(call: Callable[[Any], Any], arg: Any, rows: int, seconds: float) -> float:
    """Microseconds per row of ``call(arg)``, after a warm-up of a fifth of ``seconds``."""
    warm = time.perf_counter() + seconds / 5
    while time.perf_counter() < warm:
        call(arg)
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        call(arg)
        calls += 1
    return (time.perf_counter() - start) / calls / rows * 1e6


def _feed(manifest: Manifest, n: int) -> dict[str, np.ndarray]:
    requests = sample_requests(manifest.name, n, seed=1, absent=True)
    frame = pd.DataFrame(
        [{f.name: r.get(f.name, absent_value(f)) for f in manifest.features} for r in requests]
    )
    return onnx_inputs(manifest.features, frame)


def _describe(explainer: Explainer) -> str:
    attribution = explainer.attribution
    if isinstance(attribution, TreeShap):
        return (
            f"{attribution.n_leaves} leaves, {attribution.n_entries} path conditions, "
            f"slot tables {attribution.slot_table_size:,} floats, feature table "
            f"{attribution.table.size:,} floats ({attribution.table.nbytes / 2**20:.1f} MiB)"
        )
    return f"{explainer.preprocessing.feature_of_column.size} weighted columns"


def bench_model(folder: Path, seconds: float) -> None:
    manifest = read_manifest(folder)
    artifact = folder / manifest.artifact
    started = time.perf_counter()
    explainer = Explainer.for_artifact(artifact, manifest)
    loaded = (time.perf_counter() - started) * 1e3
    print(f"{manifest.served_name} ({explainer.method}): loaded in {loaded:.0f} ms")
    print(f"  {_describe(explainer)}")
    session = open_session(str(artifact))
    outputs = [manifest.outputs.label, manifest.outputs.probabilities]
    feed = _feed(manifest, max(BATCHES))
    print(f"  {'rows':>6} {'score':>10} {'columns':>10} {'attribution':>12}   µs per row")
    for n in BATCHES:
        part = {name: column[:n] for name, column in feed.items()}
        columns = explainer.preprocessing.columns(part)
        score = _per_row(lambda p: run_rows(session, outputs, p), part, n, seconds)
        preprocess = _per_row(explainer.preprocessing.columns, part, n, seconds)
        attribute = _per_row(explainer.contributions_of_columns, columns, n, seconds)
        print(f"  {n:>6} {score:>10.1f} {preprocess:>10.1f} {attribute:>12.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="a model repository (default: build one)")
    parser.add_argument("--seconds", type=float, default=0.5, help="timing per figure")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.model_dir
        if root is None:
            root = Path(scratch)
            build_all(root)
        for folder in find_model_folders(root):
            bench_model(folder, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

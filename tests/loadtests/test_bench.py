"""``make bench`` in its tiny size: every row present, the JSON and the plots written.

No performance assertion: figures on a shared 2-core machine are for the bench's own run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.bench.report import PATHS


def test_bench_runs_every_path_and_writes_its_report(model_dir: Path, tmp_path: Path) -> None:
    argv = [
        sys.executable, "-m", "loadtests.bench", "--size", "tiny", "--no-fail",
        "--workdir", str(tmp_path), "--model-dir", str(model_dir), "--concurrency", "4",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads((tmp_path / "bench.json").read_text())
    rows = {row["key"]: row for row in report["rows"]}
    assert list(rows) == [p.key for p in PATHS]
    for key, row in rows.items():
        if row["available"]:
            assert row["throughput"] > 0 and row["p50_us"] > 0, key
            assert row["errors"] == {}, key
        else:
            assert row["note"], key
    assert rows["gateway-lineage-on"]["available"]
    # Lineage rows wait for the store to hold every record before the next path runs.
    for key in ("gateway-lineage-on", "gateway-reasons-off", "gateway-secured", "score-batch"):
        assert rows[key]["drain_s"] is not None and rows[key]["drain_s"] >= 0, key
        assert 0 < rows[key]["stored_per_s"] <= rows[key]["throughput"], key
    assert rows["gateway-lineage-off"]["drain_s"] is None
    # Each decision's CPU split by server process (one round: the parts sum to the total).
    lineage = {"gateway-lineage-on", "runtime", "lineage"}
    servers = {
        "direct": {"runtime"},
        "gateway-lineage-off": {"gateway-lineage-off", "runtime"},
        "gateway-lineage-on": lineage,
        "score-batch": lineage,
    }
    for key, names in servers.items():
        split = rows[key]["cpu_split"]
        assert set(split) == names, key
        assert sum(split.values()) == pytest.approx(rows[key]["cpu_us_per_decision"]), key
        # /proc counts CPU in 10 ms ticks: the store's ~8 ms for the tiny Score row's ~200
        # records can read as 0, so its share is checked where it stores thousands of rows.
        small = {"lineage"} if key == "gateway-lineage-on" else set()
        assert all(us > 0 for name, us in split.items() if name not in small), (key, split)
    assert "CPU us/dec by process: gateway-lineage-on" in done.stdout
    targets = {t["name"] for t in report["targets"]}
    assert "gateway throughput >= 1.0 x direct" in targets
    assert "lineage on >= 0.90 x lineage off" in targets
    assert "reasons on >= 0.90 x reasons off" in targets
    # The secured path answered its TLS, token-carrying calls without errors (above).
    assert "secured >= 0.90 x open" in targets
    # One call in flight is judged on the product's default (lineage on) as well.
    assert "gateway, lineage on, p50 <= direct p50 + 0.8 ms" in targets
    assert "gateway, lineage on, p99 <= 2 x direct p99" in targets
    for png in ("bench-latency-cdf.png", "bench-throughput.png"):
        assert (tmp_path / png).read_bytes().startswith(b"\x89PNG")
    for title in (p.title for p in PATHS):
        assert title in done.stdout

"""The variants harness: gateway variants loaded in turn, each decision's CPU split by process.

No performance assertion: what is checked is that every phase is measured and attributed to the
right processes (a gateway without lineage gives the store nothing to do).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.bench.variants import parse_variant


def test_variants_are_measured_in_alternating_rounds(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "variants.json"
    argv = [
        sys.executable, "-m", "loadtests.bench.variants",
        "--variant", "off:off", "--variant", "on:on", "--variant", "loop:on:--outbox-sync loop",
        "--env", "loop:SCOREGATE_VARIANTS_TEST=1",
        "--rounds", "2", "--seconds", "1", "--concurrency", "4", "--control",
        "--workdir", str(tmp_path), "--model-dir", str(model_dir), "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads(out.read_text())
    phases = report["phases"]
    order = [(p["round_no"], p["variant"]) for p in phases]
    # --control puts an identical copy of the base right after it; the order is reversed in the
    # second round, so no variant always follows the same one.
    names = ["off", "off-again", "on", "loop"]
    assert order == [(0, n) for n in names] + [(1, n) for n in reversed(names)]
    modes = {v["name"]: v["mode"] for v in report["variants"]}
    for p in phases:
        assert p["rate"] > 0 and 0 < p["p50_ms"] <= p["p99_ms"], p
        assert p["cpu_us"]["gateway"] > 0 and p["cpu_us"]["runtime"] > 0, p
        # The main thread is part of the gateway's CPU, never all of it (gRPC's threads work too).
        assert 0 < p["gateway_main_us"] < p["cpu_us"]["gateway"], p
        assert 0 <= p["machine_idle"] < 1, p
        # Four calls in flight share runtime calls now and then, never more than four a call.
        assert 1 <= p["rows_per_call"] <= 4, p
        stored = p["cpu_us"]["store"]
        # The store works only for the variants that deliver to it.
        delivers = modes[p["variant"]] == "on"
        assert stored > 0 if delivers else stored < 0.05 * p["cpu_us"]["gateway"], p
    assert report["variants"][1] == {
        "name": "off-again",
        "mode": "off",
        "args": [],
        "env": {},
        "reasons": True,
    }
    assert report["variants"][3]["args"] == ["--outbox-sync", "loop"]
    assert report["variants"][3]["env"] == {"SCOREGATE_VARIANTS_TEST": "1"}
    assert "rate / off's, per round, and the median:" in done.stdout
    assert "noise floor: off-again (identical to off) differed by up to " in done.stdout
    # Nothing of the run is left behind but its report.
    assert not list(tmp_path.glob("outbox-*")) and not list(tmp_path.glob("variants-*.db*"))


@pytest.mark.parametrize("text", ["off", "x:fast", ":on", "x:maybe:--flag"])
def test_a_malformed_variant_is_named(text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="expected name:mode"):
        parse_variant(text)


def test_the_noise_floor_is_the_controls_largest_stray_from_the_base() -> None:
    from loadtests.bench.variants import Phase, Variant, _ratios

    def phase(round_no: int, name: str, rate: float) -> Phase:
        return Phase(round_no, name, rate, 1.0, 2.0, {}, 0.0, 0.0, 0.0)

    variants = [Variant("off", "off", []), Variant("off-again", "off", []), Variant("on", "on", [])]
    rates = {"off": (100, 200), "off-again": (110, 160), "on": (70, 150)}
    phases = [phase(i, name, r[i]) for name, r in rates.items() for i in (0, 1)]
    text = _ratios(variants, phases, "off-again")
    assert "  off-again      1.10 0.80  median 0.95" in text
    assert "  on             0.70 0.75  median 0.72" in text
    # The control strayed by 10% and then 20%: the larger is the floor.
    floor = "noise floor: off-again (identical to off) differed by up to 20% in a round"
    assert text.endswith(floor)
    assert "noise floor" not in _ratios(variants, phases)

"""Runs the kit's command line the way a performance team would, as a separate process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from load_support import LoadRun, LoadRunner


@pytest.fixture
def run_scenario(tmp_path: Path) -> LoadRunner:
    """``python -m loadtests run SCENARIO --host HOST ...`` with reports under tmp_path."""

    def run(scenario: str, host: str, *args: str, locust: tuple[str, ...] = ()) -> LoadRun:
        out = tmp_path / scenario
        argv = [
            sys.executable, "-m", "loadtests", "run", scenario,
            "--host", host, "--out", str(out), "--warmup", "20", *args,
        ]  # fmt: skip
        if locust:
            argv += ["--", *locust]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        return LoadRun(done.returncode, done.stdout + done.stderr, out, scenario)

    return run

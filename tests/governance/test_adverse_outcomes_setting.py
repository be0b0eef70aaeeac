"""The store refuses an --adverse-outcomes it cannot read, naming the bad item, before serving."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from loadtests.local.topology import entry_point


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("churn", "'churn' is not decision_point=label"),
        ("churn=left,card-fraud=", "'card-fraud=' is not decision_point=label"),
        ("=left", "'=left' is not decision_point=label"),
        ("churn=left,churn=stayed", "'churn' is named twice"),
    ],
)
def test_a_bad_adverse_outcomes_setting_is_refused(value: str, named: str, tmp_path: Path) -> None:
    started = subprocess.run(
        [
            *entry_point("scoregate-lineage"),
            "--db-url",
            f"sqlite:///{tmp_path / 'lineage.db'}",
            "--port",
            "0",
            "--plaintext",
            "true",
            "--open-access",
            "true",
            "--adverse-outcomes",
            value,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 2, started.stderr
    assert named in started.stderr
    assert not (tmp_path / "lineage.db").exists()

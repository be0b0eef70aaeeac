"""What a load-test run left behind: its exit code, output and reports."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoadRun:
    code: int
    output: str
    out: Path
    scenario: str

    @property
    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / f"{self.scenario}.summary.json").read_text())
        return data


LoadRunner = Callable[..., LoadRun]

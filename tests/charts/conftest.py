"""Chart fixtures: every scenario rendered once per session with Helm's own engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chart_support import KSERVE_CRDS, Rendered, crd_schemas, load_values, render, scenario_files

SCENARIOS = scenario_files()


@pytest.fixture(scope="session")
def renders() -> dict[str, Rendered]:
    """Default values and each ci/*-values.yaml, rendered."""
    return {name: render(load_values(path), name) for name, path in SCENARIOS.items()}


@pytest.fixture(params=sorted(SCENARIOS))
def rendered(request: pytest.FixtureRequest, renders: dict[str, Rendered]) -> Rendered:
    """One scenario at a time, for tests that hold for all of them."""
    return renders[request.param]


@pytest.fixture(scope="session")
def kserve_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    if not (KSERVE_CRDS / "serving.kserve.io_inferenceservices.yaml").is_file():
        pytest.skip(f"KServe CRD schemas not found at {KSERVE_CRDS} (see shared/kserve-crds)")
    return crd_schemas(KSERVE_CRDS)


@pytest.fixture(scope="session")
def chart_values_file() -> Path:
    from chart_support import CHART_DIR

    return CHART_DIR / "values.yaml"

"""docs/operations.md stays in step with the chart it documents."""

from __future__ import annotations

from chart_support import CI_DIR, REPO
from values_reference import DOC, section, table


def test_values_reference_is_current() -> None:
    """Regenerate with: .venv/bin/python tests/charts/values_reference.py"""
    assert section(DOC.read_text()) == table()


def test_the_guide_names_every_scenario_and_the_build_command() -> None:
    doc = DOC.read_text()
    for path in CI_DIR.glob("*-values.yaml"):
        assert path.name in doc, path.name
    assert "docker build -f charts/images/Dockerfile --target" in doc
    assert (REPO / "charts" / "images" / "Dockerfile").is_file()

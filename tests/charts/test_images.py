"""The image definitions agree with the chart: each target runs the command the chart gives it."""

from __future__ import annotations

import json
import re
import tomllib

from chart_support import REPO, Rendered, container

DOCKERFILE = REPO / "charts" / "images" / "Dockerfile"


def _stages() -> dict[str, list[str]]:
    """Instructions of each named stage, continuation lines joined and comments dropped."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = stages.setdefault(match.group(1), [])
        current.append(line)
    return stages


def test_each_image_runs_the_chart_command_as_a_numeric_non_root_user(
    renders: dict[str, Rendered],
) -> None:
    stages = _stages()
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    rendered = renders["default"]
    runtime = rendered.of_kind("ServingRuntime")[0]["spec"]["containers"][0]
    commands = {
        "runtime": runtime["command"],
        "gateway": container(rendered, "Deployment", "gateway", "gateway")["command"],
        "lineage": container(rendered, "StatefulSet", "lineage", "lineage")["command"],
    }
    for target, command in commands.items():
        lines = stages["base"] + stages[target]
        entrypoint = next(line for line in reversed(lines) if line.startswith("ENTRYPOINT"))
        assert json.loads(entrypoint.removeprefix("ENTRYPOINT")) == command, target
        assert command[0] in scripts, f"{command[0]} is not an installed entry point"
        user = next(line for line in reversed(lines) if line.startswith("USER"))
        uid = user.split()[1].split(":")[0]
        assert uid.isdigit() and int(uid) != 0, f"{target}: {user}"
        assert int(uid) == rendered.values.get("podSecurity", {}).get("runAsUser", 10001)


def test_the_final_stages_hold_no_build_tools() -> None:
    stages = _stages()
    base = " ".join(stages["base"])
    assert "pip uninstall -y pip setuptools wheel" in base
    for target in ("base", "runtime", "gateway", "lineage"):
        text = " ".join(stages[target])
        assert not re.search(r"apt-get install|pip install|gcc|build-essential", text), target

"""The ``scoregate`` command finds its subcommands through the packages' entry points."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from gateway import cli

COMMANDS = ("models", "runtime", "gateway", "lineage", "canary", "up", "demo")


def _scoregate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_every_registered_command() -> None:
    done = _scoregate("--help")
    assert done.returncode == 0
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)


def test_an_unknown_command_is_refused_with_the_usage() -> None:
    done = _scoregate("nope")
    assert done.returncode == 2
    assert "unknown command 'nope'" in done.stderr
    assert "  lineage serve|show|..." in done.stderr


def test_a_subcommand_runs_in_its_own_package() -> None:
    done = _scoregate("lineage", "--help")
    assert done.returncode == 0
    assert "usage: scoregate lineage" in done.stdout


def test_a_command_whose_package_is_absent_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As in the container images, which carry the servers but not loadtests/.
    absent = EntryPoint("up", "scoregate_absent_kit.demo:up_main", cli.GROUP)
    monkeypatch.setattr(cli, "commands", lambda: {"up": absent})
    assert cli.main(["up"]) == 2
    error = capsys.readouterr().err
    assert "command 'up' is registered but its package is not installed here" in error
    assert "scoregate_absent_kit" in error

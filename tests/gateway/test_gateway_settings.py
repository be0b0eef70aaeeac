"""Gateway settings: environment, overridden by flags; refused settings exit 2 before serving."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway.server import main
from gateway.settings import GatewaySettings, parse_settings


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCOREGATE_GATEWAY_PORT", "7000")
    monkeypatch.setenv("SCOREGATE_GATEWAY_OTLP_ENDPOINT", "collector:4317")
    monkeypatch.setenv("SCOREGATE_GATEWAY_MODEL_DIR", str(tmp_path))
    settings = parse_settings(["--routes", "r.yaml", "--port", "0"])
    assert settings.port == 0
    assert settings.otlp_endpoint == "collector:4317"
    assert settings.model_dir == tmp_path
    assert settings.routes == Path("r.yaml")


def test_every_setting_is_documented() -> None:
    assert all(field.description for field in GatewaySettings.model_fields.values())


@pytest.mark.parametrize(
    "argv",
    [
        ["--routes", "r.yaml", "--model-dir", "m", "--port", "70000"],
        ["--routes", "r.yaml", "--model-dir", "m", "--grace-s", "-1"],
        ["--model-dir", "m"],
    ],
    ids=["port", "grace", "no-routes"],
)
def test_bad_settings_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "invalid settings" in capsys.readouterr().err


def test_an_unreadable_routes_file_exits_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # main() clears it for kserve
    code = main(["--routes", str(tmp_path / "absent.yaml"), "--model-dir", str(tmp_path)])
    assert code == 2
    assert "absent.yaml" in caplog.text


def test_the_telemetry_key_comes_from_its_file_and_a_short_one_is_refused(tmp_path: Path) -> None:
    from gateway.server import telemetry_pseudonyms

    key = tmp_path / "telemetry.key"
    key.write_text("a-telemetry-secret-of-enough-bytes\n")
    settings = parse_settings(["--routes", "r.yaml", "--model-dir", "m"])
    keyed = parse_settings(
        ["--routes", "r.yaml", "--model-dir", "m", "--telemetry-key-file", str(key)]
    )
    assert telemetry_pseudonyms(keyed).pseudonym("4111111111111111") == telemetry_pseudonyms(
        keyed
    ).pseudonym("4111111111111111")
    # Without a file: a random key per process, so two gateways' hashes match nothing.
    assert telemetry_pseudonyms(settings).ephemeral
    assert telemetry_pseudonyms(settings).pseudonym("x") != telemetry_pseudonyms(
        settings
    ).pseudonym("x")
    key.write_text("short")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        telemetry_pseudonyms(keyed)

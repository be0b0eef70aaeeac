"""The routing config is validated at start-up; every refusal names the offending path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.routes import config_version, load_routes
from runtimes.manifest import Manifest

Config = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Config], None]:
    *parents, last = path.split("/")

    def change(config: Config) -> None:
        node = config
        for key in parents:
            node = node[key]
        node[last] = value

    return change


def _drop(path: str) -> Callable[[Config], None]:
    *parents, last = path.split("/")

    def change(config: Config) -> None:
        node = config
        for key in parents:
            node = node[key]
        del node[last]

    return change


CARD = "decision_points/card-fraud"
BAD_CONFIGS: list[tuple[str, Callable[[Config], None], str]] = [
    ("unknown-top-level-key", _set("listen", ":80"), "listen: Extra inputs are not permitted"),
    ("unknown-policy-key", _set(f"{CARD}/policy/colour", "red"), "card-fraud.policy.colour"),
    ("unknown-version-key", _set("models/card-fraud/versions/1/weight", 3), "versions.1.weight"),
    ("unknown-model", _set(f"{CARD}/primary/model", "churn"), "card-fraud.primary.model"),
    ("unknown-alias", _set(f"{CARD}/primary/version", "stable"), "card-fraud.primary.version"),
    ("alias-to-nothing", _set("models/card-fraud/aliases/champion", "9"), "aliases.champion"),
    ("review-above-decline", _set(f"{CARD}/policy/review_at", 0.9), "policy.review_at"),
    ("threshold-above-1", _set(f"{CARD}/policy/decline_at", 1.5), "policy.decline_at"),
    ("threshold-below-0", _set(f"{CARD}/policy/review_at", -0.1), "policy.review_at"),
    ("timeout-zero", _set(f"{CARD}/timeout_ms", 0), "card-fraud.timeout_ms"),
    ("timeout-negative", _set(f"{CARD}/timeout_ms", -5), "card-fraud.timeout_ms"),
    ("no-policy", _drop(f"{CARD}/policy"), "decision_points.card-fraud.policy: Field required"),
    ("no-endpoints", _set("models/card-fraud/versions/1/endpoints", []), "versions.1.endpoints"),
    ("bad-endpoint", _set("models/card-fraud/versions/1/endpoints", ["nohost"]), "endpoints"),
    (
        "version-without-manifest",
        _set("models/card-fraud/versions/7", {"endpoints": ["127.0.0.1:9001"]}),
        "models.card-fraud.versions.7: no manifest for card-fraud-v7",
    ),
    (
        "decision-point-model-without-manifest",
        lambda c: (
            c["models"].update(churn={"versions": {"1": {"endpoints": ["127.0.0.1:9001"]}}}),
            c["decision_points"].update(
                churn={
                    "primary": {"model": "churn", "version": "1"},
                    "timeout_ms": 100,
                    "policy": {"version": "p", "review_at": 0.2, "decline_at": 0.3},
                }
            ),
        ),
        "decision_points.churn.primary: no manifest for churn-v1",
    ),
]


@pytest.mark.parametrize(
    ("change", "named"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_a_bad_config_is_refused_naming_the_path(
    tmp_path: Path,
    manifests: dict[tuple[str, str], Manifest],
    demo_config: Callable[[str], Config],
    write_routes: Callable[[Path, Config], Path],
    change: Callable[[Config], None],
    named: str,
) -> None:
    config = copy.deepcopy(demo_config("127.0.0.1:9001"))
    change(config)
    path = write_routes(tmp_path / "routes.yaml", config)
    with pytest.raises(ConfigError) as info:
        load_routes(path, manifests)
    assert named in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["- just\n- a list\n", "models: {a: [unclosed\n", ""])
def test_a_file_that_is_not_a_routing_mapping_is_refused(
    tmp_path: Path, manifests: dict[tuple[str, str], Manifest], text: str
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"routes\.yaml"):
        load_routes(path, manifests)


def test_a_valid_config_resolves_aliases_and_versions_by_content(
    tmp_path: Path,
    manifests: dict[tuple[str, str], Manifest],
    demo_config: Callable[[str], Config],
    write_routes: Callable[[Path, Config], Path],
) -> None:
    path = write_routes(tmp_path / "routes.yaml", demo_config("127.0.0.1:9001"))
    routes = load_routes(path, manifests)

    card = routes.decision_points["card-fraud"]
    assert (card.primary.model, card.primary.version) == ("card-fraud", "1")  # champion
    assert card.primary.manifest == manifests[("card-fraud", "1")]
    assert sorted(card.versions) == ["1", "2"]
    assert card.timeout_s == 0.25
    assert (card.policy.version, card.policy.review_at, card.policy.decline_at) == (
        "card-fraud-policy-1",
        0.5,
        0.85,
    )
    assert routes.config_version == config_version(path.read_bytes())
    assert len(routes.config_version) == 16
    assert load_routes(path, manifests).config_version == routes.config_version

    path.write_text(path.read_text() + "\n# a comment changes the file, so the version\n")
    assert load_routes(path, manifests).config_version != routes.config_version


def test_versions_written_as_yaml_numbers_are_read_as_strings(
    tmp_path: Path, manifests: dict[tuple[str, str], Manifest]
) -> None:
    text = """
models:
  credit-risk:
    versions:
      1: {endpoints: ["127.0.0.1:9001"]}
decision_points:
  credit-risk:
    primary: {model: credit-risk, version: 1}
    timeout_ms: 500
    policy: {version: credit-risk-policy-1, review_at: 0.3, decline_at: 0.6}
"""
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    routes = load_routes(path, manifests)
    assert routes.decision_points["credit-risk"].primary.version == "1"

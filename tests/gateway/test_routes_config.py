"""The routing config is validated at start-up; every refusal names the offending path."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.attempts.rules import RulesScorer
from gateway.demo_rules import DEMO_RULES
from gateway.errors import ConfigError
from gateway.routing.compiled import config_version, load_routes
from gateway.runtime_client.targets import ModelTarget
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
    ("unknown-model", _set(f"{CARD}/primary/model", "mortgage"), "card-fraud.primary.model"),
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
            c["models"].update(mortgage={"versions": {"1": {"endpoints": ["127.0.0.1:9001"]}}}),
            c["decision_points"].update(
                mortgage={
                    "primary": {"model": "mortgage", "version": "1"},
                    "timeout_ms": 100,
                    "policy": {"version": "p", "review_at": 0.2, "decline_at": 0.3},
                }
            ),
        ),
        "decision_points.mortgage.primary: no manifest for mortgage-v1",
    ),
    (
        "decision-names-not-distinct",
        _set(f"{CARD}/policy/decisions", {"approve": "pass", "review": "pass"}),
        "card-fraud.policy.decisions: Value error, the three decisions must have distinct names",
    ),
    (
        "decision-name-not-lower-case",
        _set(f"{CARD}/policy/decisions", {"decline": "Flag!"}),
        "card-fraud.policy.decisions.decline",
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


def _full(config: Config) -> Config:
    """The demo config with every traffic-management key in use."""
    config = copy.deepcopy(config)
    config["rules"] = {"card-fraud-rules": {"file": "card-fraud-rules.yaml"}}
    config["circuit_breaker"] = {"consecutive_failures": 3, "open_ms": 500}
    config["decision_points"]["card-fraud"].update(
        canary={"target": {"model": "card-fraud", "version": "challenger"}, "weight": 5},
        shadows=[{"target": {"model": "card-fraud", "version": "2"}, "percent": 50}],
        retry={"num_retries": 1, "budget_percent": 10},
        hedge={"delay_ms": 30, "use_p95": True},
        fallback={
            "chain": [{"model": "card-fraud", "version": "2"}, {"rules": "card-fraud-rules"}],
            "reserve_ms": 15,
        },
    )
    return config


@pytest.fixture
def full_routes(
    tmp_path: Path,
    demo_config: Callable[[str], Config],
) -> Callable[[Callable[[Config], object] | None], Path]:
    def write(change: Callable[[Config], object] | None = None) -> Path:
        shutil.copy(DEMO_RULES["card-fraud"], tmp_path / "card-fraud-rules.yaml")
        config = _full(demo_config("127.0.0.1:9001"))
        if change is not None:
            change(config)
        path = tmp_path / "routes.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


def test_every_traffic_key_compiles(
    full_routes: Callable[[Callable[[Config], object] | None], Path],
    manifests: dict[tuple[str, str], Manifest],
) -> None:
    path = full_routes(None)
    routes = load_routes(path, manifests)
    card = routes.decision_points["card-fraud"]
    assert card.canary is not None
    assert (card.canary.target.version, card.canary.weight, card.canary.buckets) == ("2", 5.0, 500)
    assert card.canary.stickiness_key == "entity_key"
    assert [(s.target.version, s.buckets) for s in card.shadows] == [("2", 5000)]
    assert (card.retry.num_retries, card.retry.budget_ratio) == (1, 0.1)
    assert card.hedge is not None and (card.hedge.delay_s, card.hedge.use_p95) == (0.03, True)
    assert card.fallback is not None and card.fallback.reserve_s == 0.015
    model_step, rules_step = card.fallback.chain
    assert isinstance(model_step, ModelTarget) and model_step.version == "2"
    assert isinstance(rules_step, RulesScorer) and rules_step.version == "card-fraud-rules-1"
    assert (routes.breaker.consecutive_failures, routes.breaker.open_s) == (3, 0.5)
    # The rules file is part of the config's version.
    rules = path.parent / "card-fraud-rules.yaml"
    rules.write_text(rules.read_text() + "\n# edited\n")
    assert load_routes(path, manifests).config_version != routes.config_version


TRAFFIC = "decision_points.card-fraud"
BAD_TRAFFIC: list[tuple[str, Callable[[Config], object], str]] = [
    ("weight-above-100", _set(f"{CARD}/canary/weight", 101), f"{TRAFFIC}.canary.weight"),
    ("weight-negative", _set(f"{CARD}/canary/weight", -1), f"{TRAFFIC}.canary.weight"),
    ("unknown-canary-key", _set(f"{CARD}/canary/sticky", True), f"{TRAFFIC}.canary.sticky"),
    ("bad-stickiness", _set(f"{CARD}/canary/stickiness_key", "ip"), "canary.stickiness_key"),
    (
        "canary-unknown-version",
        _set(f"{CARD}/canary/target/version", "9"),
        f"{TRAFFIC}.canary.target.version",
    ),
    (
        "canary-other-schema",
        _set(f"{CARD}/canary/target", {"model": "credit-risk", "version": "1"}),
        f"{TRAFFIC}.canary.target: credit-risk-v1 takes other features",
    ),
    ("canary-is-primary", _set(f"{CARD}/canary/target/version", "1"), "is the primary itself"),
    (
        "shadow-unknown-model",
        _set(f"{CARD}/shadows", [{"target": {"model": "mortgage", "version": "1"}}]),
        f"{TRAFFIC}.shadows[0].target.model",
    ),
    (
        "shadow-percent",
        _set(
            f"{CARD}/shadows", [{"target": {"model": "card-fraud", "version": "2"}, "percent": 150}]
        ),
        "shadows[0].percent",
    ),
    ("too-many-retries", _set(f"{CARD}/retry/num_retries", 5), f"{TRAFFIC}.retry.num_retries"),
    ("retry-on-timeout", _set(f"{CARD}/retry/retry_on", ["deadline_exceeded"]), "retry.retry_on"),
    ("hedge-delay-zero", _set(f"{CARD}/hedge/delay_ms", 0), f"{TRAFFIC}.hedge.delay_ms"),
    (
        "fallback-cycle",
        _set(
            f"{CARD}/fallback/chain",
            [
                {"model": "card-fraud", "version": "2"},
                {"model": "card-fraud", "version": "challenger"},
            ],
        ),
        "fallback.chain[1]: fallback cycle (card-fraud-v1 -> card-fraud-v2 -> card-fraud-v2)",
    ),
    (
        "fallback-to-itself",
        _set(f"{CARD}/fallback/chain", [{"model": "card-fraud", "version": "champion"}]),
        "fallback.chain[0]: fallback cycle (card-fraud-v1 -> card-fraud-v1)",
    ),
    (
        "fallback-unknown-rules",
        _set(f"{CARD}/fallback/chain", [{"rules": "nope"}]),
        "fallback.chain[0].rules: unknown rules 'nope'",
    ),
    (
        "rules-not-last",
        _set(
            f"{CARD}/fallback/chain",
            [{"rules": "card-fraud-rules"}, {"model": "card-fraud", "version": "2"}],
        ),
        "fallback.chain[0]: a rules step must be the chain's last",
    ),
    (
        "step-both-kinds",
        _set(f"{CARD}/fallback/chain", [{"rules": "card-fraud-rules", "model": "card-fraud"}]),
        "fallback.chain[0]",
    ),
    ("empty-chain", _set(f"{CARD}/fallback/chain", []), f"{TRAFFIC}.fallback.chain"),
    (
        "rules-file-missing",
        _set("rules/card-fraud-rules/file", "gone.yaml"),
        "rules.card-fraud-rules.file",
    ),
    (
        "breaker-zero",
        _set("circuit_breaker/consecutive_failures", 0),
        "circuit_breaker.consecutive_failures",
    ),
    ("breaker-rate", _set("circuit_breaker/error_rate", 2), "circuit_breaker.error_rate"),
    (
        "duplicate-endpoint",
        _set("models/card-fraud/versions/1/endpoints", ["h:1", "h:1"]),
        "listed twice",
    ),
]


@pytest.mark.parametrize(
    ("change", "named"), [c[1:] for c in BAD_TRAFFIC], ids=[c[0] for c in BAD_TRAFFIC]
)
def test_a_bad_traffic_setting_is_refused_naming_the_path(
    full_routes: Callable[[Callable[[Config], object] | None], Path],
    manifests: dict[tuple[str, str], Manifest],
    change: Callable[[Config], object],
    named: str,
) -> None:
    path = full_routes(change)
    with pytest.raises(ConfigError) as info:
        load_routes(path, manifests)
    assert named in str(info.value)
    assert str(path) in str(info.value)


def test_a_bad_rules_file_refuses_the_routing_config(
    full_routes: Callable[[Callable[[Config], object] | None], Path],
    manifests: dict[tuple[str, str], Manifest],
) -> None:
    path = full_routes(None)
    (path.parent / "card-fraud-rules.yaml").write_text(
        "version: v2\ndefault_score: 0.1\nrules:\n"
        "  - {code: X, description: x, when: {planet: mars}, score: 0.5}\n"
    )
    with pytest.raises(ConfigError, match=r"rules\[0\]\.when\.planet"):
        load_routes(path, manifests)


def test_the_complete_example_in_docs_routing_md_is_valid(
    tmp_path: Path, manifests: dict[tuple[str, str], Manifest]
) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "routing.md").read_text()
    example = doc.split("## A complete example", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    for name, path in DEMO_RULES.items():
        shutil.copy(path, tmp_path / f"{name}-rules.yaml")
    routes_path = tmp_path / "routes.yaml"
    routes_path.write_text(example)
    routes = load_routes(routes_path, manifests)
    card = routes.decision_points["card-fraud"]
    assert card.canary is not None and card.hedge is not None and card.fallback is not None
    assert len(card.primary.endpoints) == 2

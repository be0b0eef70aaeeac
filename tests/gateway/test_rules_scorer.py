"""The rule-based fallback scorer: valid on every valid input, reasons ranked, files checked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.attempts.rules import MAX_REASONS, compile_rules, load_rules
from gateway.demo_rules import DEMO_RULES
from gateway.errors import ConfigError
from runtimes.manifest import Manifest
from runtimes.training.datasets import sample_requests


@pytest.mark.parametrize("model", sorted(DEMO_RULES))
def test_the_demo_rules_score_every_valid_request_in_microseconds(
    model: str, manifests: dict[tuple[str, str], Manifest]
) -> None:
    manifest = manifests[(model, "1")]
    scorer = load_rules(f"{model}-rules", DEMO_RULES[model], manifest)
    rows = sample_requests(model, 5000, seed=3)
    snapshots = [
        {k: v if isinstance(v, bool | str) else float(v) for k, v in r.items()} for r in rows
    ]
    started = time.perf_counter()
    answers = [scorer.score(s) for s in snapshots]
    per_row = (time.perf_counter() - started) / len(rows)
    assert per_row < 100e-6  # microseconds, even on a loaded 2-core machine
    assert all(0.0 <= a.score <= 1.0 and len(a.reasons) <= MAX_REASONS for a in answers)
    flagged = [a for a in answers if a.reasons]
    assert flagged, "the demo rules should fire on some realistic requests"
    for a in flagged:
        assert [r.rank for r in a.reasons] == list(range(1, len(a.reasons) + 1))
    assert scorer.version.startswith(f"{model}-rules-")
    assert len(scorer.sha256) == 64


def test_the_score_is_the_highest_matching_rule_and_reasons_rank_by_score(
    manifests: dict[tuple[str, str], Manifest],
) -> None:
    scorer = load_rules("r", DEMO_RULES["card-fraud"], manifests[("card-fraud", "1")])
    row = dict(sample_requests("card-fraud", 1, seed=1)[0])
    row.update(
        amount=6000.0, card_present=False, merchant_category="jewelry", channel="ecommerce",
        txn_count_24h=1.0, account_age_days=900.0, distance_from_home_km=1.0, hour_of_day=12.0,
    )  # fmt: skip
    answer = scorer.score(row)
    assert answer.score == 0.9
    assert [r.code for r in answer.reasons] == [
        "R01_LARGE_CARD_NOT_PRESENT",
        "R02_HIGH_RISK_MERCHANT_ONLINE",
        "R06_LARGE_AMOUNT",
    ]
    row.update(amount=10.0, card_present=True, merchant_category="grocery", channel="pos")
    quiet = scorer.score(row)
    assert (quiet.score, quiet.reasons) == (0.05, ())


def test_an_absent_optional_feature_matches_no_condition(
    manifests: dict[tuple[str, str], Manifest],
) -> None:
    scorer = load_rules("r", DEMO_RULES["card-fraud"], manifests[("card-fraud", "1")])
    assert scorer.score({}).score == 0.05


BAD_RULES = [
    ("unknown-feature", "when: {loyalty: {gte: 1}}", "rules[0].when.loyalty"),
    ("unknown-category", "when: {channel: carrier-pigeon}", "unknown categories carrier-pigeon"),
    ("number-as-category", "when: {amount: big}", "rules[0].when.amount"),
    ("boolean-as-number", "when: {card_present: {gte: 1}}", "rules[0].when.card_present"),
    ("score-above-1", "when: {amount: {gte: 1}}\n    score: 1.5", "rules[0].score"),
    ("unknown-op", "when: {amount: {above: 1}}", "rules[0].when.amount"),
]


@pytest.mark.parametrize(
    ("when", "named"), [b[1:] for b in BAD_RULES], ids=[b[0] for b in BAD_RULES]
)
def test_a_bad_rules_file_is_refused_naming_the_path(
    manifests: dict[tuple[str, str], Manifest], tmp_path: Path, when: str, named: str
) -> None:
    score = "" if "score:" in when else "\n    score: 0.5"
    text = (
        "version: v1\ndefault_score: 0.1\nrules:\n"
        f"  - code: X\n    description: x\n    {when}{score}\n"
    )
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_rules("r", path, manifests[("card-fraud", "1")])
    assert named in str(info.value)


def test_compiling_reports_every_problem_at_once(
    manifests: dict[tuple[str, str], Manifest],
) -> None:
    text = b"""version: v1
default_score: 0.1
rules:
  - {code: A, description: a, when: {nope: true}, score: 0.2}
  - {code: B, description: b, when: {channel: {in: [moon]}}, score: 0.3}
"""
    scorer, problems = compile_rules("r", text, manifests[("card-fraud", "1")], "rules.yaml")
    assert scorer is None
    assert len(problems) == 2

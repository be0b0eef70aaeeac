"""Demo rules files for the rule-based fallback scorer (``gateway.attempts.rules``), one
per demo model.

A routing file names them under ``rules:`` with a path relative to itself, so deployments copy
them next to ``routes.yaml`` (the Helm chart puts both in the routes ConfigMap).
"""

from __future__ import annotations

from pathlib import Path

DEMO_RULES_DIR = Path(__file__).parent
DEMO_RULES = {
    "card-fraud": DEMO_RULES_DIR / "card-fraud-rules.yaml",
    "credit-risk": DEMO_RULES_DIR / "credit-risk-rules.yaml",
    "churn": DEMO_RULES_DIR / "churn-rules.yaml",
    "trade-anomaly": DEMO_RULES_DIR / "trade-anomaly-rules.yaml",
}

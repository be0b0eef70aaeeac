"""Synthetic data and the deterministic build of the demo models (card-fraud, credit-risk)."""

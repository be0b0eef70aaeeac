"""What each demo model version is: its feature schema, training data and sklearn pipeline.

card-fraud v1 and v2 share one feature schema and one training set but differ in algorithm and
hyper-parameters, so they give genuinely different scores (a realistic champion/challenger pair).
trade-anomaly is unsupervised: an isolation forest learns what usual trades look like, and its
labels (the planted anomalies) serve only to measure it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, StandardScaler

from runtimes.manifest import BooleanFeature, CategoryFeature, Feature, NumberFeature
from runtimes.training.anomaly import AnomalyForest
from runtimes.training.datasets import (
    CHANNELS,
    EMPLOYMENT_TYPES,
    INSTRUMENT_CLASSES,
    MERCHANT_CATEGORIES,
    SERVICE_CHANNELS,
    TRADE_ANOMALY_RATE,
)

CARD_FRAUD_FEATURES: tuple[Feature, ...] = (
    NumberFeature(name="amount", min=0, max=50_000, description="transaction amount"),
    CategoryFeature(
        name="merchant_category", categories=MERCHANT_CATEGORIES, description="merchant sector"
    ),
    CategoryFeature(name="channel", categories=CHANNELS, description="how the card was used"),
    NumberFeature(name="hour_of_day", min=0, max=23, description="local hour of the transaction"),
    NumberFeature(
        name="distance_from_home_km",
        min=0,
        max=20_000,
        description="distance from home address; unknown without a device location",
        sensitive="personal",
        required=False,
        absent="missing",
    ),
    NumberFeature(name="txn_count_24h", min=0, max=500, description="card transactions in 24h"),
    BooleanFeature(name="card_present", description="card physically present"),
    NumberFeature(name="account_age_days", min=0, max=20_000, description="age of the account"),
)

CREDIT_RISK_FEATURES: tuple[Feature, ...] = (
    NumberFeature(
        name="annual_income",
        min=0,
        max=5_000_000,
        description="declared income",
        sensitive="personal",
    ),
    NumberFeature(name="debt_to_income", min=0, max=10, description="monthly debt / income"),
    NumberFeature(
        name="credit_history_months",
        min=0,
        max=1200,
        description="length of credit history; an applicant without a credit file has none",
        required=False,
        absent="default",
        default=0,
    ),
    NumberFeature(name="delinquencies_2y", min=0, max=50, description="delinquencies, 2 years"),
    NumberFeature(name="loan_amount", min=500, max=2_000_000, description="amount requested"),
    CategoryFeature(
        name="employment_type", categories=EMPLOYMENT_TYPES, description="employment status"
    ),
    BooleanFeature(name="home_owner", description="owns their home"),
    NumberFeature(
        name="age", min=18, max=100, description="applicant age in years", sensitive="personal"
    ),
)


CHURN_FEATURES: tuple[Feature, ...] = (
    NumberFeature(name="tenure_months", min=0, max=600, description="months as a customer"),
    NumberFeature(name="product_count", min=1, max=10, description="products held"),
    NumberFeature(
        name="balance_trend_pct",
        min=-100,
        max=300,
        description="change of the average balance over the last 3 months, in percent",
    ),
    NumberFeature(name="complaints_12m", min=0, max=50, description="complaints in 12 months"),
    CategoryFeature(
        name="service_channel", categories=SERVICE_CHANNELS, description="main service channel"
    ),
    BooleanFeature(name="salary_paid_in", description="salary paid into the account"),
)


TRADE_ANOMALY_FEATURES: tuple[Feature, ...] = (
    NumberFeature(name="notional", min=0, max=5e10, description="trade notional"),
    NumberFeature(
        name="price_deviation_bps",
        min=-5_000,
        max=5_000,
        description="execution price minus the mid at booking, in basis points of the mid",
    ),
    NumberFeature(
        name="time_of_day_hours", min=0, max=24, description="booking time, hours since midnight"
    ),
    NumberFeature(
        name="counterparty_age_days",
        min=0,
        max=40_000,
        description="days since the counterparty was onboarded",
    ),
    CategoryFeature(
        name="instrument_class", categories=INSTRUMENT_CLASSES, description="instrument class"
    ),
)


def _one_hot(features: tuple[Feature, ...]) -> tuple[OneHotEncoder, list[str]]:
    """An encoder with the manifest's categories fixed, so unseen values encode as all zeros."""
    cats = [f for f in features if isinstance(f, CategoryFeature)]
    encoder = OneHotEncoder(
        categories=[list(f.categories) for f in cats],
        handle_unknown="ignore",
        sparse_output=False,
    )
    return encoder, [f.name for f in cats]


def _missing(features: tuple[Feature, ...]) -> list[str]:
    """Numbers and booleans whose absence reaches the graph as NaN (``absent: missing``)."""
    return [
        f.name for f in features if f.absent == "missing" and not isinstance(f, CategoryFeature)
    ]


def _tree_inputs(features: tuple[Feature, ...], impute: bool) -> ColumnTransformer:
    """One-hot categories and the numbers as they are; with ``impute``, a missing number is
    replaced by the training median inside the graph (for a learner that takes no NaN)."""
    encoder, categorical = _one_hot(features)
    missing = _missing(features) if impute else []
    others = [
        f.name for f in features if not isinstance(f, CategoryFeature) and f.name not in missing
    ]
    steps: list[tuple[str, object, list[str]]] = [
        ("categories", encoder, categorical),
        ("numbers", "passthrough", others),
    ]
    if missing:
        steps.append(("imputed", SimpleImputer(strategy="median"), missing))
    return ColumnTransformer(steps, sparse_threshold=0.0)


def card_fraud_v1(seed: int) -> Pipeline:
    classifier = GradientBoostingClassifier(
        n_estimators=120, max_depth=3, learning_rate=0.1, subsample=0.8, random_state=seed
    )
    inputs = _tree_inputs(CARD_FRAUD_FEATURES, impute=True)
    return Pipeline([("inputs", inputs), ("classifier", classifier)])


def card_fraud_v2(seed: int) -> Pipeline:
    classifier = HistGradientBoostingClassifier(
        max_iter=150,
        learning_rate=0.06,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )
    # Histogram gradient boosting learns where missing values go at each split.
    inputs = _tree_inputs(CARD_FRAUD_FEATURES, impute=False)
    return Pipeline([("inputs", inputs), ("classifier", classifier)])


def churn_v1(seed: int) -> Pipeline:
    classifier = GradientBoostingClassifier(
        n_estimators=80, max_depth=3, learning_rate=0.1, subsample=0.8, random_state=seed
    )
    inputs = _tree_inputs(CHURN_FEATURES, impute=False)
    return Pipeline([("inputs", inputs), ("classifier", classifier)])


def trade_anomaly_v1(seed: int) -> Pipeline:
    """Isolation trees on the raw numbers and the one-hot class; rows flagged from sklearn's cut
    at the planted share (the policy's threshold is the desk's, in the routes)."""
    forest = AnomalyForest(
        n_estimators=100, max_samples=256, contamination=TRADE_ANOMALY_RATE, random_state=seed
    )
    inputs = _tree_inputs(TRADE_ANOMALY_FEATURES, impute=False)
    return Pipeline([("inputs", inputs), ("classifier", forest)])


def credit_risk_v1(seed: int) -> Pipeline:
    """A scorecard: quantile bins for income, history and age, scaled ratios, logistic weights."""
    encoder, categorical = _one_hot(CREDIT_RISK_FEATURES)
    binned = ["annual_income", "credit_history_months", "age"]
    scaled = ["debt_to_income", "delinquencies_2y", "loan_amount"]
    inputs = ColumnTransformer(
        [
            ("categories", encoder, categorical),
            ("bins", KBinsDiscretizer(n_bins=6, encode="onehot-dense"), binned),
            ("scaled", StandardScaler(), scaled),
            ("flags", "passthrough", ["home_owner"]),
        ],
        sparse_threshold=0.0,
    )
    classifier = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    return Pipeline([("inputs", inputs), ("classifier", classifier)])


@dataclass(frozen=True)
class ModelSpec:
    """One model version to build: data source, rows, seeds and pipeline factory."""

    name: str
    version: str
    description: str
    algorithm: str
    features: tuple[Feature, ...]
    pipeline: Callable[[int], Pipeline]
    rows: int
    data_seed: int
    model_seed: int
    heldout_fraction: float = 0.2
    author: str = "demo-data-scientist"
    """Who built it (a principal of the access policy): the four-eyes rule wants an approver
    other than the author."""


MODEL_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="card-fraud",
        version="1",
        description="Card authorisation fraud score (gradient-boosted trees).",
        algorithm="sklearn.ensemble.GradientBoostingClassifier",
        features=CARD_FRAUD_FEATURES,
        pipeline=card_fraud_v1,
        rows=30_000,
        data_seed=20240101,
        model_seed=11,
    ),
    ModelSpec(
        name="card-fraud",
        version="2",
        description="Card authorisation fraud score (histogram gradient boosting challenger).",
        algorithm="sklearn.ensemble.HistGradientBoostingClassifier",
        features=CARD_FRAUD_FEATURES,
        pipeline=card_fraud_v2,
        rows=30_000,
        data_seed=20240101,
        model_seed=22,
    ),
    ModelSpec(
        name="credit-risk",
        version="1",
        description="Loan application default risk (logistic regression scorecard).",
        algorithm="sklearn.linear_model.LogisticRegression",
        features=CREDIT_RISK_FEATURES,
        pipeline=credit_risk_v1,
        rows=20_000,
        data_seed=20240202,
        model_seed=33,
    ),
    ModelSpec(
        name="churn",
        version="1",
        description="Retail customer attrition within 90 days (gradient-boosted trees).",
        algorithm="sklearn.ensemble.GradientBoostingClassifier",
        features=CHURN_FEATURES,
        pipeline=churn_v1,
        rows=20_000,
        data_seed=20240303,
        model_seed=44,
    ),
    ModelSpec(
        name="trade-anomaly",
        version="1",
        description="Unusual trades for surveillance review (isolation forest anomaly score).",
        algorithm="sklearn.ensemble.IsolationForest",
        features=TRADE_ANOMALY_FEATURES,
        pipeline=trade_anomaly_v1,
        rows=20_000,
        data_seed=20240404,
        model_seed=55,
    ),
)

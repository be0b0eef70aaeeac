"""Synthetic, bank-like training data for the demo models, reproducible from a seed.

Card transactions carry a ~3% fraud rate driven by what fraud teams look at: large amounts, risky
merchant categories, card-not-present channels, night hours, distance from home, velocity and
young accounts. Loan applications default (~9%) with debt-to-income, recent delinquencies, low
income, short credit history and precarious employment. Labels are drawn from a logistic model
of those drivers, so the demo models have real signal but are not perfect.

Trades are unlabelled in practice (an anomaly detector learns what is usual, not what is wrong):
a ~2% minority is planted with what trade surveillance looks for (an outsized notional, a price
far from mid, an hour outside the desk's, a counterparty onboarded days ago), and the label says
which rows were planted, so the held-out AUC measures whether the detector finds them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

FeatureValue = float | str | bool

MERCHANT_CATEGORIES = (
    "grocery",
    "fuel",
    "restaurants",
    "electronics",
    "travel",
    "online_services",
    "jewelry",
    "gambling",
)
_MERCHANT_SHARE = (0.30, 0.14, 0.20, 0.08, 0.07, 0.13, 0.03, 0.05)
# (log-normal median amount, fraud log-odds) per merchant category.
_MERCHANT_PROFILE = {
    "grocery": (45.0, -0.6),
    "fuel": (55.0, -0.3),
    "restaurants": (35.0, -0.5),
    "electronics": (300.0, 0.9),
    "travel": (450.0, 0.5),
    "online_services": (25.0, 0.4),
    "jewelry": (700.0, 1.2),
    "gambling": (120.0, 1.0),
}
CHANNELS = ("pos", "contactless", "ecommerce", "atm")
_CHANNEL_SHARE = (0.35, 0.30, 0.28, 0.07)
_CHANNEL_LOGIT = {"pos": -0.3, "contactless": -0.5, "ecommerce": 0.6, "atm": 0.4}

EMPLOYMENT_TYPES = ("salaried", "self_employed", "contractor", "retired", "student", "unemployed")
_EMPLOYMENT_SHARE = (0.55, 0.12, 0.10, 0.12, 0.06, 0.05)
_EMPLOYMENT_LOGIT = {
    "salaried": -0.3,
    "self_employed": 0.3,
    "contractor": 0.2,
    "retired": -0.2,
    "student": 0.5,
    "unemployed": 1.2,
}

SERVICE_CHANNELS = ("branch", "online", "mobile", "phone")
_SERVICE_CHANNEL_SHARE = (0.2, 0.3, 0.4, 0.1)
_SERVICE_CHANNEL_LOGIT = {"branch": -0.2, "online": 0.1, "mobile": 0.0, "phone": 0.5}

INSTRUMENT_CLASSES = ("equity", "bond", "fx", "derivative")
_INSTRUMENT_SHARE = (0.4, 0.25, 0.25, 0.1)
# (median notional, price deviation from mid in bps: one standard deviation) per class.
_INSTRUMENT_PROFILE = {
    "equity": (250_000.0, 6.0),
    "bond": (2_000_000.0, 3.0),
    "fx": (5_000_000.0, 1.5),
    "derivative": (10_000_000.0, 12.0),
}

CARD_FRAUD_RATE = 0.03
CREDIT_DEFAULT_RATE = 0.09
CHURN_RATE = 0.12
TRADE_ANOMALY_RATE = 0.02


@dataclass(frozen=True)
class Dataset:
    """Feature columns (float64 numbers/booleans as 0/1, str categories) and 0/1 labels."""

    features: pd.DataFrame
    labels: np.ndarray


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def _intercept_for_rate(logits: np.ndarray, rate: float) -> float:
    """The intercept that makes the mean probability ``rate`` (bisection; deterministic)."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if float(_sigmoid(logits + mid).mean()) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _card_transactions(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    merchant = rng.choice(np.array(MERCHANT_CATEGORIES), size=n, p=_MERCHANT_SHARE)
    channel = rng.choice(np.array(CHANNELS), size=n, p=_CHANNEL_SHARE)
    median = np.array([_MERCHANT_PROFILE[m][0] for m in merchant])
    amount = np.clip(np.round(median * rng.lognormal(0.0, 0.9, n), 2), 0.5, 50_000.0)
    # Daytime-heavy activity: most transactions 08:00-22:00.
    hour_weights = np.array(
        [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 4, 5, 6, 6, 7, 7, 6, 6, 6, 7, 7, 6, 5]
    )
    hour_weights = np.concatenate([hour_weights, [4, 3, 2]])
    hour = rng.choice(24, size=n, p=hour_weights / hour_weights.sum()).astype(np.float64)
    away = rng.random(n) < 0.12
    distance = np.where(away, rng.lognormal(5.5, 1.3, n), rng.lognormal(1.5, 1.0, n))
    distance = np.clip(np.round(distance, 1), 0.0, 20_000.0)
    txn_count = np.clip(rng.poisson(np.where(rng.random(n) < 0.05, 14.0, 3.0)), 0, 500)
    card_present = np.where(channel == "ecommerce", False, rng.random(n) < 0.97)
    account_age = np.clip(np.round(rng.gamma(2.0, 900.0, n)), 0, 20_000)

    night = (hour <= 5) | (hour >= 23)
    z = (
        0.55 * np.log1p(amount / 100.0)
        + np.array([_MERCHANT_PROFILE[m][1] for m in merchant])
        + np.array([_CHANNEL_LOGIT[c] for c in channel])
        + 1.0 * night
        + 0.45 * np.log1p(distance / 50.0)
        + 0.12 * np.minimum(txn_count, 30)
        + 0.9 * ~card_present
        + 1.1 * (account_age < 90)
    )
    p = _sigmoid(z + _intercept_for_rate(z, CARD_FRAUD_RATE))
    labels = (rng.random(n) < p).astype(np.int64)
    frame = pd.DataFrame(
        {
            "amount": amount,
            "merchant_category": merchant.astype(object),
            "channel": channel.astype(object),
            "hour_of_day": hour,
            "distance_from_home_km": distance,
            "txn_count_24h": txn_count.astype(np.float64),
            "card_present": card_present.astype(np.float64),
            "account_age_days": account_age.astype(np.float64),
        }
    )
    return frame, labels


def _loan_applications(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    employment = rng.choice(np.array(EMPLOYMENT_TYPES), size=n, p=_EMPLOYMENT_SHARE)
    age = np.clip(np.round(rng.normal(42.0, 13.0, n)), 18, 100)
    age = np.where(employment == "student", np.clip(age - 18, 18, 30), age)
    age = np.where(employment == "retired", np.clip(age + 22, 60, 100), age)
    income_median = np.where(employment == "student", 14_000.0, 52_000.0)
    income_median = np.where(employment == "unemployed", 9_000.0, income_median)
    income = np.clip(np.round(income_median * rng.lognormal(0.0, 0.55, n), -2), 0, 5_000_000)
    history = np.clip(np.round((age - 18) * 12 * rng.uniform(0.2, 1.0, n)), 0, 1200)
    dti = np.clip(np.round(rng.gamma(2.2, 0.16, n), 3), 0.0, 10.0)
    delinquencies = np.clip(rng.poisson(np.where(rng.random(n) < 0.15, 2.0, 0.1)), 0, 50)
    loan_amount = np.clip(np.round(income * rng.uniform(0.05, 0.9, n), -2), 500, 2_000_000)
    home_owner = rng.random(n) < np.clip(0.15 + (age - 18) / 80, 0.1, 0.8)

    z = (
        3.2 * dti
        + 0.65 * np.minimum(delinquencies, 6)
        - 0.8 * np.log(np.maximum(income, 1_000.0) / 50_000.0)
        - 0.01 * np.minimum(history, 240)
        + 0.6 * np.log1p(loan_amount / np.maximum(income, 1_000.0))
        + np.array([_EMPLOYMENT_LOGIT[e] for e in employment])
        - 0.35 * home_owner
    )
    p = _sigmoid(z + _intercept_for_rate(z, CREDIT_DEFAULT_RATE))
    labels = (rng.random(n) < p).astype(np.int64)
    frame = pd.DataFrame(
        {
            "annual_income": income,
            "debt_to_income": dti,
            "credit_history_months": history,
            "delinquencies_2y": delinquencies.astype(np.float64),
            "loan_amount": loan_amount,
            "employment_type": employment.astype(object),
            "home_owner": home_owner.astype(np.float64),
            "age": age,
        }
    )
    return frame, labels


def _retail_customers(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Customers who may leave within 90 days: short tenure, few products, a falling balance,
    complaints and no salary paid in are what retention teams watch."""
    tenure = np.clip(np.round(rng.gamma(1.6, 40.0, n)), 0, 600)
    products = np.clip(1 + rng.poisson(np.where(tenure > 36, 1.6, 0.7)), 1, 10)
    trend = np.clip(np.round(rng.normal(0.0, 18.0, n), 1), -100.0, 300.0)
    complaints = np.clip(rng.poisson(np.where(rng.random(n) < 0.1, 1.8, 0.1)), 0, 50)
    channel = rng.choice(np.array(SERVICE_CHANNELS), size=n, p=_SERVICE_CHANNEL_SHARE)
    salary = rng.random(n) < np.clip(0.3 + products * 0.1, 0.0, 0.9)
    z = (
        -0.012 * np.minimum(tenure, 120)
        - 0.35 * np.minimum(products, 5)
        - 0.03 * np.clip(trend, -60, 60)
        + 0.55 * np.minimum(complaints, 5)
        + np.array([_SERVICE_CHANNEL_LOGIT[c] for c in channel])
        - 0.8 * salary
    )
    p = _sigmoid(z + _intercept_for_rate(z, CHURN_RATE))
    labels = (rng.random(n) < p).astype(np.int64)
    frame = pd.DataFrame(
        {
            "tenure_months": tenure,
            "product_count": products.astype(np.float64),
            "balance_trend_pct": trend,
            "complaints_12m": complaints.astype(np.float64),
            "service_channel": channel.astype(object),
            "salary_paid_in": salary.astype(np.float64),
        }
    )
    return frame, labels


def _trades(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Trades booked by a desk: notional and price spread by instrument class, booked in market
    hours, with established counterparties; planted anomalies break one to four of those."""
    instrument = rng.choice(np.array(INSTRUMENT_CLASSES), size=n, p=_INSTRUMENT_SHARE)
    median = np.array([_INSTRUMENT_PROFILE[c][0] for c in instrument])
    spread = np.array([_INSTRUMENT_PROFILE[c][1] for c in instrument])
    notional = median * rng.lognormal(0.0, 0.8, n)
    deviation = rng.normal(0.0, 1.0, n) * spread
    hour = np.clip(rng.normal(12.5, 2.4, n), 6.0, 20.0)
    counterparty_age = rng.gamma(2.0, 1200.0, n) + 60.0

    planted = rng.random(n) < TRADE_ANOMALY_RATE
    # Each planted trade breaks one trait, and each other one with probability 0.3; some breaks
    # are mild enough to look usual, so the detector cannot find every one.
    broken = rng.random((n, 4)) < 0.3
    broken[np.arange(n), rng.integers(0, 4, n)] = True
    broken &= planted[:, None]
    notional = np.where(broken[:, 0], notional * rng.uniform(3.0, 100.0, n), notional)
    side = rng.choice(np.array([-1.0, 1.0]), size=n)
    deviation = np.where(broken[:, 1], side * rng.uniform(15.0, 400.0, n), deviation)
    odd_hour = np.where(rng.random(n) < 0.5, rng.uniform(0.0, 6.0, n), rng.uniform(20.0, 24.0, n))
    hour = np.where(broken[:, 2], odd_hour, hour)
    counterparty_age = np.where(broken[:, 3], rng.uniform(0.0, 90.0, n), counterparty_age)
    frame = pd.DataFrame(
        {
            "notional": np.clip(np.round(notional, 2), 0.0, 5e10),
            "price_deviation_bps": np.clip(np.round(deviation, 2), -5_000.0, 5_000.0),
            "time_of_day_hours": np.clip(np.round(hour, 2), 0.0, 24.0),
            "counterparty_age_days": np.clip(np.round(counterparty_age), 0.0, 40_000.0),
            "instrument_class": instrument.astype(object),
        }
    )
    return frame, planted.astype(np.int64)


_GENERATORS: dict[str, Callable[[int, np.random.Generator], tuple[pd.DataFrame, np.ndarray]]] = {
    "card-fraud": _card_transactions,
    "credit-risk": _loan_applications,
    "churn": _retail_customers,
    "trade-anomaly": _trades,
}
BOOLEAN_FEATURES = frozenset({"card_present", "home_owner", "salary_paid_in"})

# Card-not-present transactions often come without a device location: the distance from home is
# then not known (an optional feature the card-fraud models read as missing).
UNKNOWN_DISTANCE_SHARE_ECOMMERCE = 0.3


def _unobserved_card_values(frame: pd.DataFrame, rng: np.random.Generator) -> None:
    unknown = (frame["channel"] == "ecommerce").to_numpy()
    unknown &= rng.random(len(frame)) < UNKNOWN_DISTANCE_SHARE_ECOMMERCE
    frame.loc[unknown, "distance_from_home_km"] = np.nan


_UNOBSERVED: dict[str, Callable[[pd.DataFrame, np.random.Generator], None]] = {
    "card-fraud": _unobserved_card_values,
}


def generate(model_name: str, n: int, seed: int, unobserved: bool = True) -> Dataset:
    """``n`` labelled rows for "card-fraud", "credit-risk", "churn" or "trade-anomaly"; the same
    seed gives the same rows.

    With ``unobserved``, values a bank would not know for some rows are NaN (the labels were
    drawn from the true values); without, every value is there, and all others are the same.
    """
    try:
        generator = _GENERATORS[model_name]
    except KeyError:
        raise ValueError(f"no synthetic data for model {model_name!r}") from None
    frame, labels = generator(n, np.random.default_rng(seed))
    blank = _UNOBSERVED.get(model_name)
    if unobserved and blank is not None:
        blank(frame, np.random.default_rng([seed, 1]))
    return Dataset(frame, labels)


def sample_requests(
    model_name: str, n: int, seed: int, absent: bool = False
) -> list[dict[str, FeatureValue]]:
    """``n`` realistic feature dicts for ``model_name``, as a bank would send them for scoring.

    Numbers are floats, categories strings and booleans bools; the same seed gives the same rows.
    With ``absent``, a feature the bank would not know for a row is left out of it, as often as
    in the training data; without, every row has every feature.
    """
    frame = generate(model_name, n, seed, unobserved=absent).features
    rows: list[dict[str, FeatureValue]] = []
    for record in frame.to_dict(orient="records"):
        row: dict[str, FeatureValue] = {}
        for name, value in record.items():
            key = str(name)
            if isinstance(value, float) and np.isnan(value):
                continue
            if key in BOOLEAN_FEATURES:
                row[key] = bool(value)
            elif isinstance(value, str):
                row[key] = value
            else:
                row[key] = float(value)
        rows.append(row)
    return rows

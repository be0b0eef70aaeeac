"""The demo models' reason catalogues: for each feature, what it means when it pushed a score
towards fraud, default, leaving or a trade flag, in words an applicant, a fraud analyst, a
retention team or a trade surveillance analyst can act on.

Codes are stable across model versions for the same meaning (card-fraud v1 and v2 share them),
so a reason code means the same thing in every decision that gives it.
"""

from __future__ import annotations

from runtimes.reasons import ReasonCatalogue, ReasonEntry, Side

_Row = tuple[str, str, Side | None, str | None, str]
"""(code, feature, side, value, statement): see ``runtimes.reasons``."""

_CARD_FRAUD: tuple[_Row, ...] = (
    ("F01", "amount", "high", None, "The amount is unusually high"),
    ("F02", "amount", "low", None, "The amount is typical of card testing"),
    ("F03", "merchant_category", None, None, "The merchant's sector has a high fraud rate"),
    ("F04", "channel", None, "ecommerce", "The card was used online, without being present"),
    ("F05", "channel", None, "atm", "The card was used at a cash machine"),
    ("F06", "channel", None, None, "The way the card was used is unusual for fraud checks"),
    ("F07", "hour_of_day", None, None, "The transaction was made at an unusual hour"),
    ("F08", "distance_from_home_km", "high", None, "The transaction is far from home"),
    ("F09", "distance_from_home_km", "low", None, "The distance from home is unusual"),
    ("F10", "txn_count_24h", "high", None, "Many card transactions in the last 24 hours"),
    ("F11", "txn_count_24h", "low", None, "Card activity in the last 24 hours is unusual"),
    ("F12", "card_present", None, "false", "The card was not present"),
    ("F13", "card_present", None, "true", "The card's presence did not lower the risk"),
    ("F14", "account_age_days", "low", None, "The account was opened recently"),
    ("F15", "account_age_days", "high", None, "The account's age did not lower the risk"),
)
_CARD_FRAUD_ABSENT = (
    ("F16", "distance_from_home_km", "The location of the transaction is unknown"),
)

_CREDIT_RISK: tuple[_Row, ...] = (
    ("R01", "annual_income", "low", None, "Income is insufficient for the amount of credit"),
    ("R02", "annual_income", "high", None, "Income did not offset the other risk factors"),
    ("R03", "debt_to_income", "high", None, "Debt obligations are high relative to income"),
    ("R04", "debt_to_income", "low", None, "Debt relative to income did not lower the risk"),
    ("R05", "credit_history_months", "low", None, "Length of credit history is too short"),
    ("R06", "credit_history_months", "high", None, "Credit history did not lower the risk"),
    ("R07", "delinquencies_2y", None, None, "Delinquent payments in the last two years"),
    ("R08", "loan_amount", "high", None, "The amount requested is high relative to income"),
    ("R09", "loan_amount", "low", None, "The amount requested did not lower the risk"),
    ("R10", "employment_type", None, None, "Employment status or income stability"),
    ("R11", "home_owner", None, "false", "No home ownership"),
    ("R12", "home_owner", None, "true", "Home ownership did not lower the risk"),
    ("R13", "age", None, None, "Length of time at current circumstances"),
)
_CREDIT_RISK_ABSENT = (("R14", "credit_history_months", "No credit history on file"),)


_CHURN: tuple[_Row, ...] = (
    ("A01", "tenure_months", "low", None, "The customer joined recently"),
    ("A02", "tenure_months", "high", None, "Long tenure did not lower the risk of leaving"),
    ("A03", "product_count", "low", None, "The customer holds few products"),
    ("A04", "product_count", "high", None, "Holding several products did not lower the risk"),
    ("A05", "balance_trend_pct", "low", None, "The balance has been falling"),
    ("A06", "balance_trend_pct", "high", None, "A rising balance did not lower the risk"),
    ("A07", "complaints_12m", None, None, "Complaints in the last 12 months"),
    ("A08", "service_channel", None, "phone", "Served mainly by phone"),
    ("A09", "service_channel", None, None, "The main service channel"),
    ("A10", "salary_paid_in", None, "false", "No salary paid into the account"),
    ("A11", "salary_paid_in", None, "true", "A salary paid in did not lower the risk"),
)


# For an isolation forest, a value pushes towards a flag by being rare among the desk's trades,
# on either side of the usual: both sides are stated as unusual, not as too high or too low.
_TRADE_ANOMALY: tuple[_Row, ...] = (
    ("T01", "notional", "high", None, "The notional is unusually large for the desk"),
    ("T02", "notional", "low", None, "The notional is unusually small for the desk"),
    ("T03", "price_deviation_bps", "high", None, "The price is unusually far above the mid"),
    ("T04", "price_deviation_bps", "low", None, "The price is unusually far below the mid"),
    ("T05", "time_of_day_hours", None, None, "The trade was booked outside usual trading hours"),
    ("T06", "counterparty_age_days", "low", None, "The counterparty was onboarded recently"),
    (
        "T07",
        "counterparty_age_days",
        "high",
        None,
        "The counterparty's long relationship is unusual for a trade like this",
    ),
    ("T08", "instrument_class", None, "derivative", "Derivative trades of this profile are rare"),
    (
        "T09",
        "instrument_class",
        None,
        None,
        "Trades of this profile are rare in this instrument class",
    ),
)


def _entries(
    rows: tuple[_Row, ...], absent: tuple[tuple[str, str, str], ...]
) -> tuple[ReasonEntry, ...]:
    when_absent = tuple(
        ReasonEntry(code=code, feature=feature, absent=True, statement=statement)
        for code, feature, statement in absent
    )
    return when_absent + tuple(
        ReasonEntry(
            code=code,
            feature=feature,
            side=side,
            value=value,
            statement=statement,
        )
        for code, feature, side, value, statement in rows
    )


def demo_catalogue(name: str, version: str) -> ReasonCatalogue:
    """The catalogue for a demo model version (``catalogue_version`` names model and revision)."""
    rows, absent = {
        "card-fraud": (_CARD_FRAUD, _CARD_FRAUD_ABSENT),
        "credit-risk": (_CREDIT_RISK, _CREDIT_RISK_ABSENT),
        "churn": (_CHURN, ()),
        "trade-anomaly": (_TRADE_ANOMALY, ()),
    }[name]
    return ReasonCatalogue(
        model=name,
        model_version=version,
        catalogue_version=f"{name}-v{version}-reasons-1",
        reasons=_entries(rows, absent),
    )

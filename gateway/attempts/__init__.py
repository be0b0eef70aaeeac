"""Getting a score inside one deadline.

Attempts at a model version, breakers, retry budgets, the fallback chain, rule-based scorers.
"""

"""The Score path's orchestration.

Admission, validation, arm choice, shadows, the decision and its threshold policy.
"""

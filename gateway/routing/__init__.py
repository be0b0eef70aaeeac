"""The routing config.

Its schema, the compiled routes, sticky splits, hot reload and route-change events.
"""

"""Where decisions and route changes go once made.

Decision sinks, and route-change delivery to the lineage store.
"""

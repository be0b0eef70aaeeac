"""Model monitoring computed where the decisions are: drift against the manifests' baselines
and performance from recorded outcomes (``measures``: the statistics, on counts)."""

"""Automated canary analysis: ``scoregate canary run`` steps a decision point's canary weight.

The controller (``controller.py``) is a plain async class over three seams: where the routes
live (``appliers.py``: the local file, or the routes ConfigMap through the Kubernetes API),
what the lineage store says about the arms (``lineage.py``, over the lineage gRPC API only), and
the clock. What to judge (``verdict.py``) is a pure function of the plan (``plan.py``) and the
evidence. It imports none of the request path (transport, decisions, attempts): it only edits
the routes file the gateway reloads.
"""

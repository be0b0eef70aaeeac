"""Per-feature contributions to a served model's score, from the ONNX artifact itself (no
KServe): ``Explainer.for_artifact(artifact, manifest).contributions(feed)``."""

from runtimes.explain.errors import UnexplainableModel
from runtimes.explain.explainer import Contributions, Explainer

__all__ = ["Contributions", "Explainer", "UnexplainableModel"]

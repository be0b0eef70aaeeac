"""What scoregate's runtimes add to an OIP v2 response, and the method paths the gateway calls.

The runtimes put the served artifact's sha256, their instance name and their scoring environment
(onnxruntime version and settings, ``runtimes.graph.scoring_environment``) in the response's
``parameters``; the gateway records them, so a decision names what actually answered and how.
"""

from __future__ import annotations

SERVICE = "inference.GRPCInferenceService"
MODEL_INFER = f"/{SERVICE}/ModelInfer"
MODEL_READY = f"/{SERVICE}/ModelReady"
SERVER_READY = f"/{SERVICE}/ServerReady"
MODEL_METADATA = f"/{SERVICE}/ModelMetadata"

ARTIFACT_SHA256_PARAMETER = "artifact_sha256"
RUNTIME_INSTANCE_PARAMETER = "runtime_instance"
SCORING_ENVIRONMENT_PARAMETER = "scoring_environment"
CONTRIBUTIONS_BASE_PARAMETER = "contributions_base"
"""With the ``contributions`` output: the base value (repr of a float64) they add up from."""
CONTRIBUTIONS_FROM_SCORE_PARAMETER = "from_score"
"""A parameter of the requested ``contributions`` output (a number in [0, 1], as a string: the
protocol's parameters hold no floats): only rows whose
score is at least this are explained, the others' rows are NaN. The gateway sends the lowest
score any decision point gives reasons from, so that approvals cost no attribution."""

"""What scoregate's runtimes add to an OIP v2 response, and the method paths the gateway calls.

The runtimes put the served artifact's sha256 and their instance name in the response's
``parameters``; the gateway records both, so a decision names what actually answered.
"""

from __future__ import annotations

SERVICE = "inference.GRPCInferenceService"
MODEL_INFER = f"/{SERVICE}/ModelInfer"
MODEL_READY = f"/{SERVICE}/ModelReady"
SERVER_READY = f"/{SERVICE}/ServerReady"
MODEL_METADATA = f"/{SERVICE}/ModelMetadata"

ARTIFACT_SHA256_PARAMETER = "artifact_sha256"
RUNTIME_INSTANCE_PARAMETER = "runtime_instance"

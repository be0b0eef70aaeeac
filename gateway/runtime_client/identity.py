"""An endpoint's model identity from its OIP v2 model metadata, for servers that cannot put the
artifact sha256 on every answer (a stock MLServer or Triton).

``metadata_problem`` is the check itself, free of transport: the server must know the model by
the name (and version) the routes give, list the manifest's artifact sha256 among the model's
``versions`` as ``artifact_sha256:<hex>`` (MLServer returns its model settings' ``versions``
list as written), and, where it lists tensors, take every feature with the datatype the gateway
sends and return the manifest's probabilities output. ``MetadataCheck`` runs it for one endpoint
at start-up and again whenever the channel reconnects; calls wait for it, and are refused while
it fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc

from gateway.errors import InvalidModelOutput, ModelRuntimeError, RuntimeUnavailable
from gateway.runtime_client.targets import ModelTarget, Serving
from oip.v2 import grpc_predict_v2_pb2 as pb
from runtimes.manifest import CategoryFeature, Manifest

DIGEST_PREFIX = "artifact_sha256:"
"""A server's model metadata names its artifact by a ``versions`` entry of this prefix and the
sha256 in hex."""

MetadataCall = Callable[..., Awaitable[pb.ModelMetadataResponse]]
CHECK_TIMEOUT_S = 5.0
"""How long one metadata call may take; a call waiting for the check waits its own deadline."""


def metadata_problem(
    manifest: Manifest, serving: Serving, response: pb.ModelMetadataResponse
) -> str:
    """Why ``response`` does not show ``manifest``'s artifact as ``serving``; "" if it does."""
    if response.name and response.name != serving.served_name:
        return f"metadata names model {response.name!r}, not {serving.served_name!r}"
    digests = [v[len(DIGEST_PREFIX) :] for v in response.versions if v.startswith(DIGEST_PREFIX)]
    if not digests:
        return (
            f"metadata names no artifact (no '{DIGEST_PREFIX}<hex>' among versions "
            f"{list(response.versions)}); the manifest says {manifest.artifact_sha256}"
        )
    if digests != [manifest.artifact_sha256]:
        return (
            f"metadata names artifact sha256 {', '.join(digests)}, but the manifest says "
            f"{manifest.artifact_sha256}"
        )
    if response.inputs:
        sent = {
            f.name: "BYTES" if isinstance(f, CategoryFeature) else "FP32" for f in manifest.features
        }
        listed = {t.name: t.datatype for t in response.inputs}
        for name, datatype in sent.items():
            if listed.get(name) != datatype:
                shown = listed.get(name, "no such input")
                return f"metadata input {name!r}: {shown}, the gateway sends {datatype}"
    wanted = manifest.outputs.probabilities
    if response.outputs and wanted not in {t.name for t in response.outputs}:
        return f"metadata lists no output {wanted!r}"
    return ""


class MetadataCheck:
    """The metadata check of one endpoint for one model version, run again on every reconnect."""

    __slots__ = ("_call", "_endpoint", "_problem", "_target", "_task", "verified")

    def __init__(self, target: ModelTarget, endpoint: str, call: MetadataCall) -> None:
        self._target = target
        self._endpoint = endpoint
        self._call = call
        self._task: asyncio.Task[None] | None = None
        self._problem: ModelRuntimeError | None = None
        self.verified = False
        """True from a passed check until the channel reconnects."""

    def restart(self) -> None:
        """Checks (again): at start-up, and when the channel has reconnected. A check still
        running is left to finish, but only the newest one's verdict counts."""
        self.verified = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def wait(self, timeout_s: float) -> None:
        """Returns once verified; raises the check's error, or RuntimeUnavailable in time."""
        if self._task is None or (
            self._task.done() and isinstance(self._problem, RuntimeUnavailable)
        ):
            # Not run yet, or the server could not be reached: try again for this call.
            self.restart()
        loop = asyncio.get_running_loop()
        end = loop.time() + max(timeout_s, 0.0)
        while not self.verified:
            task = self._task
            assert task is not None
            try:
                await asyncio.wait_for(asyncio.shield(task), max(end - loop.time(), 0.0))
            except TimeoutError:
                raise RuntimeUnavailable(f"{self._where}: identity check did not finish") from None
            if task is self._task:  # not restarted meanwhile: its verdict stands
                if self._problem is not None:
                    raise self._problem
                return

    @property
    def _where(self) -> str:
        serving = self._target.serving(self._endpoint)
        return f"model {serving.served_name} at {self._endpoint}"

    async def _run(self) -> None:
        serving = self._target.serving(self._endpoint)
        request = pb.ModelMetadataRequest(name=serving.served_name, version=serving.served_version)
        problem: ModelRuntimeError | None = None
        try:
            response = await self._call(request, timeout=CHECK_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            problem = RuntimeUnavailable(
                f"{self._where}: model metadata unavailable: {e.code().name}: {e.details()}"
            )
        else:
            refused = metadata_problem(self._target.manifest, serving, response)
            if refused:
                problem = InvalidModelOutput(
                    f"{self._where}: identity refused: {refused}; not calling it"
                )
        if asyncio.current_task() is self._task:
            self._problem = problem
            self.verified = problem is None

"""The runtime's OIP v2 service: KServe's, with the parts of the protocol it skips.

KServe 0.21 ignores ``model_version`` everywhere, leaves ModelMetadata's ``platform`` and
``versions`` empty, and advertises a ``model_repository_extension`` that lets any caller unload a
model (over REST; over gRPC RepositoryModelLoad always fails and RepositoryModelUnload unloads the
model, then fails). It builds its gRPC servicer inside ``GRPCServer.start``, with nothing to hand
it another. So this module has a data plane and a repository extension for both protocols (no
extension advertised, load and unload refused, platform and version in the model metadata), its
own gRPC servicer (KServe's, answering ``model_version``), its own small gRPC server, and a
``ModelServer`` that runs them in place of KServe's.

Versions: every model version is served under its own name, ``<model>-v<version>``
(``runtimes.manifest.served_name``); ``model_version`` may be empty or that version, and anything
else is NOT_FOUND (``OnnxModel.check_version``). Errors still become a status in one place,
KServe's ExceptionToStatusInterceptor (``runtimes.errors``).
"""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from kserve import ModelServer
from kserve.constants.constants import MAX_GRPC_MESSAGE_LENGTH
from kserve.errors import ModelNotFound
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from runtimes.errors import Unsupported
from runtimes.onnx_model import PLATFORM, OnnxModel

# The OIP v2 extensions this runtime implements: none. (KServe's list names the model
# repository extension, whose calls are refused here.)
EXTENSIONS: tuple[str, ...] = ()

_FIXED_REPOSITORY = (
    "the model repository is fixed when the runtime starts (every version checked against its "
    "manifest); deploy a new runtime revision to change what it serves"
)


class OipDataPlane(DataPlane):  # type: ignore[misc]
    """KServe's data plane, advertising no extension and naming each model's platform and version
    (REST and gRPC alike)."""

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "extensions": list(EXTENSIONS)}

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        metadata: dict[str, Any] = await super().model_metadata(model_name)
        model = self.get_model_from_registry(model_name)
        if isinstance(model, OnnxModel):
            metadata |= {"platform": PLATFORM, "versions": [model.manifest.version]}
        return metadata


class FixedRepository(ModelRepositoryExtension):  # type: ignore[misc]
    """The model repository extension's calls, refused: what a runtime serves is what it loaded
    and checked at start-up."""

    async def load(self, model_name: str) -> None:
        raise Unsupported(_FIXED_REPOSITORY)

    async def unload(self, model_name: str) -> None:
        raise Unsupported(_FIXED_REPOSITORY)


class OipServicer(InferenceServicer):  # type: ignore[misc]
    """KServe's servicer, answering ``model_version`` and the model metadata's ``versions``."""

    def __init__(self, data_plane: DataPlane, repository: ModelRepositoryExtension) -> None:
        super().__init__(data_plane, repository)
        self._plane = data_plane

    def _served(self, name: str, version: str) -> OnnxModel:
        model = self._plane.get_model_from_registry(name)
        if not isinstance(model, OnnxModel):
            raise ModelNotFound(name)
        model.check_version(version)
        return model

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        self._served(request.name, request.version)
        return pb.ModelReadyResponse(ready=await self._plane.model_ready(model_name=request.name))

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        self._served(request.name, request.version)
        metadata = await self._plane.model_metadata(model_name=request.name)
        return pb.ModelMetadataResponse(
            name=metadata["name"],
            versions=metadata["versions"],
            platform=metadata["platform"],
            inputs=metadata["inputs"],
            outputs=metadata["outputs"],
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        # OnnxModel.predict checks the version too; here an unknown one is refused before the
        # request's tensors are decoded.
        self._served(request.model_name, request.model_version)
        response: pb.ModelInferResponse = await super().ModelInfer(request, context)
        return response


class OipGrpcServer:
    """The gRPC listener: the OipServicer behind KServe's error interceptor.

    KServe's own LoggingInterceptor is left out: it logs a line per call, which the runtime's
    logging drops anyway, after paying for the record.
    """

    def __init__(
        self, port: int, data_plane: DataPlane, repository: ModelRepositoryExtension, grace_s: int
    ) -> None:
        self._port = port
        self._servicer = OipServicer(data_plane, repository)
        self._grace_s = grace_s
        self._server: grpc.aio.Server | None = None

    async def start(self, max_workers: int) -> None:
        """Serves until stopped (ModelServer gathers this with the REST server)."""
        self._server = grpc.aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(ExceptionToStatusInterceptor(),),
            options=[
                ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_LENGTH),
                ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_LENGTH),
            ],
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self._servicer, self._server)
        # All interfaces, as KServe's own listener (a pod's address is not known in advance).
        self._server.add_insecure_port(f"[::]:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()

    async def stop(self, sig: int | None = None) -> None:
        if self._server is not None:
            await self._server.stop(grace=self._grace_s)


class RuntimeModelServer(ModelServer):  # type: ignore[misc]
    """KServe's ModelServer (REST, signals, model registry) with this module's data plane and
    repository extension, serving gRPC with OipGrpcServer."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(enable_grpc=False, **kwargs)
        # Read by start(), which builds the REST server with them.
        self.dataplane = OipDataPlane(model_registry=self.registered_models)
        self.model_repository_extension = FixedRepository(model_registry=self.registered_models)

    def start(self, models: list[OnnxModel]) -> None:
        grpc_server = OipGrpcServer(
            self.grpc_port, self.dataplane, self.model_repository_extension, self.grace_period
        )
        # ModelServer.stop() stops the gRPC server it finds here.
        self._grpc_server = grpc_server
        self.servers.append(grpc_server.start(self.max_threads))
        super().start(models)

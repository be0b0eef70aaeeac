"""The runtime's OIP v2 gRPC service: KServe's servicer, with the parts of the protocol it skips.

KServe 0.21 ignores ``model_version`` everywhere, leaves ModelMetadata's ``platform`` and
``versions`` empty, advertises a ``model_repository_extension`` its gRPC calls cannot serve
(RepositoryModelLoad always fails; RepositoryModelUnload unloads the model, then fails), and builds
its servicer inside ``GRPCServer.start`` with nothing to hand it another. So this module has its
own servicer (KServe's, with those calls answered as OIP v2 says), its own small gRPC server, and
a ``ModelServer`` that runs it in place of KServe's.

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

# OIP v2 extensions this runtime implements over gRPC: none. (KServe's list names the model
# repository extension, whose calls are refused here.)
EXTENSIONS: tuple[str, ...] = ()

_FIXED_REPOSITORY = (
    "the model repository is fixed when the runtime starts (every version checked against its "
    "manifest); deploy a new runtime revision to change what it serves"
)


class OipServicer(InferenceServicer):  # type: ignore[misc]
    """KServe's servicer, with model versions, platform and extensions answered as OIP v2 says."""

    def __init__(self, data_plane: DataPlane, repository: ModelRepositoryExtension) -> None:
        super().__init__(data_plane, repository)
        self._plane = data_plane

    def _served(self, name: str, version: str) -> OnnxModel:
        model = self._plane.get_model_from_registry(name)
        if not isinstance(model, OnnxModel):
            raise ModelNotFound(name)
        model.check_version(version)
        return model

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        metadata = self._plane.metadata()
        return pb.ServerMetadataResponse(
            name=metadata["name"], version=metadata["version"], extensions=EXTENSIONS
        )

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        self._served(request.name, request.version)
        return pb.ModelReadyResponse(ready=await self._plane.model_ready(model_name=request.name))

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        model = self._served(request.name, request.version)
        response: pb.ModelMetadataResponse = await super().ModelMetadata(request, context)
        response.platform = PLATFORM
        response.versions[:] = [model.manifest.version]
        return response

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        # OnnxModel.predict checks the version too; here an unknown one is refused before the
        # request's tensors are decoded.
        self._served(request.model_name, request.model_version)
        response: pb.ModelInferResponse = await super().ModelInfer(request, context)
        return response

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        raise Unsupported(_FIXED_REPOSITORY)

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        raise Unsupported(_FIXED_REPOSITORY)


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
    """KServe's ModelServer (REST, signals, model registry) serving gRPC with OipGrpcServer."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(enable_grpc=False, **kwargs)

    def start(self, models: list[OnnxModel]) -> None:
        grpc_server = OipGrpcServer(
            self.grpc_port, self.dataplane, self.model_repository_extension, self.grace_period
        )
        # ModelServer.stop() stops the gRPC server it finds here.
        self._grpc_server = grpc_server
        self.servers.append(grpc_server.start(self.max_threads))
        super().start(models)

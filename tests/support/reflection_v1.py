"""A minimal ``grpc.reflection.v1`` client, for tests: its messages are declared here, from the
protocol's field numbers, in a private descriptor pool, so it shares nothing with the servers'
implementation (reflection.service) and can run in a process that also hosts one."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
_PACKAGE = "grpc.reflection.v1"
_F = descriptor_pb2.FieldDescriptorProto


def _message(name: str, *fields: tuple[str, int, int, str, bool]) -> descriptor_pb2.DescriptorProto:
    """Fields numbered above 2 share one oneof, as in the protocol: an empty ``list_services`` is
    then still sent (a plain proto3 string would not be)."""
    message = descriptor_pb2.DescriptorProto(name=name)
    for field_name, number, kind, type_name, repeated in fields:
        field = message.field.add(name=field_name, number=number, type=kind)  # type: ignore[arg-type]
        field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
        if type_name:
            field.type_name = f".{_PACKAGE}.{type_name}"
        if number > 2 and not repeated:
            if not message.oneof_decl:
                message.oneof_decl.add(name="message")
            field.oneof_index = 0
    return message


def _classes() -> tuple[Any, Any, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="tests/reflection_v1_client.proto", package=_PACKAGE, syntax="proto3"
    )
    string, message, bytes_, int32 = _F.TYPE_STRING, _F.TYPE_MESSAGE, _F.TYPE_BYTES, _F.TYPE_INT32
    file.message_type.extend(
        [
            _message(
                "ServerReflectionRequest",
                ("host", 1, string, "", False),
                ("file_containing_symbol", 4, string, "", False),
                ("list_services", 7, string, "", False),
            ),
            _message(
                "ServerReflectionResponse",
                ("valid_host", 1, string, "", False),
                ("file_descriptor_response", 4, message, "FileDescriptorResponse", False),
                ("list_services_response", 6, message, "ListServiceResponse", False),
                ("error_response", 7, message, "ErrorResponse", False),
            ),
            _message("FileDescriptorResponse", ("file_descriptor_proto", 1, bytes_, "", True)),
            _message("ListServiceResponse", ("service", 1, message, "ServiceResponse", True)),
            _message("ServiceResponse", ("name", 1, string, "", False)),
            _message(
                "ErrorResponse",
                ("error_code", 1, int32, "", False),
                ("error_message", 2, string, "", False),
            ),
        ]
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    request, response = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in ("ServerReflectionRequest", "ServerReflectionResponse")
    )
    return request, response, file


Request, Response, _ = _classes()


async def ask(address: str, **request: str) -> Any:
    """One ServerReflectionInfo exchange over v1 (``list_services=""``,
    ``file_containing_symbol=...``); returns the response."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.stream_stream(
            METHOD,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=Response.FromString,
        )
        replies = call(iter([Request(**request)]), timeout=5)
        (reply,) = [reply async for reply in replies]
        return reply


async def list_services(address: str) -> set[str]:
    reply = await ask(address, list_services="")
    return {service.name for service in reply.list_services_response.service}


async def file_names_for(address: str, symbol: str) -> list[str]:
    """The names of the files (the one declaring ``symbol``, and its dependencies) sent back."""
    reply = await ask(address, file_containing_symbol=symbol)
    assert not reply.HasField("error_response"), reply.error_response.error_message
    return [
        descriptor_pb2.FileDescriptorProto.FromString(raw).name
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]

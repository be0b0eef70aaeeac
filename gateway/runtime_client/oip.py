"""The model client for Open Inference Protocol (v2) gRPC runtimes: KServe, Triton, MLServer.

One ``grpc.aio`` channel per endpoint, opened at start-up and reused; with client TLS it is
reopened when the gateway's certificate files are rotated (``security.tls.ReopeningChannel``),
and that endpoint's calls and identity checks are bound to the new channel. Channel-level
retries are off: retrying is the router's decision, inside the request's one deadline budget.

Requests are encoded without building protobuf messages per call. A ``ModelInferRequest`` is a
concatenation of its fields' encodings, so each model version gets, once, the encoded bytes of
every input tensor up to its value: a number's tensor ends with its 4-byte FP32 value, and a
boolean's or a category's whole tensor is one of a few known byte strings. A request is then a
``b"".join`` of those pieces (tests check it parses to the request a protobuf client would send).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc

from gateway.deadline import Deadline
from gateway.errors import (
    InvalidModelOutput,
    ModelRuntimeError,
    RuntimeDeadlineExceeded,
    RuntimeFailed,
    RuntimeRefusedInput,
    RuntimeUnavailable,
)
from gateway.runtime_client.identity import MetadataCheck
from gateway.runtime_client.protocol import ModelAnswer
from gateway.runtime_client.targets import ModelTarget, Serving
from gateway.wire import length_delimited
from lineage.v1.record import VERIFIED_BY_METADATA, VERIFIED_BY_RESPONSE_PARAMETER, FeatureScalar
from oip.v2 import grpc_predict_v2_pb2 as pb
from oip.v2.parameters import (
    ARTIFACT_SHA256_PARAMETER,
    CONTRIBUTIONS_BASE_PARAMETER,
    CONTRIBUTIONS_FROM_SCORE_PARAMETER,
    MODEL_INFER,
    MODEL_METADATA,
    RUNTIME_INSTANCE_PARAMETER,
    SCORING_ENVIRONMENT_PARAMETER,
)
from runtimes.manifest import CategoryFeature, Manifest, NumberFeature, absent_value
from security.tls import ClientTls, ReopeningChannel

CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.enable_retries", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # A runtime that comes back is used again within a second, not after gRPC's default
    # back-off (up to two minutes); the circuit breaker already keeps calls off a dead one.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
)

# Runtime statuses after which another attempt (elsewhere, later) could succeed.
_UNAVAILABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.NOT_FOUND,  # the runtime does not (yet) serve this model
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    }
)
_F32 = struct.Struct("<f")
CONTRIBUTIONS_OUTPUT = "contributions"
"""scoregate's runtime's optional output: FP32 [N, F] feature contributions (docs/runtime.md)."""


def _tensor_bytes(name: str, datatype: str, contents: pb.InferTensorContents) -> bytes:
    """The encoding of one ``inputs`` entry of a ModelInferRequest."""
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=name, datatype=datatype, shape=[1, 1], contents=contents
    )
    return bytes(pb.ModelInferRequest(inputs=[tensor]).SerializeToString())


class RequestEncoder:
    """Encodes one validated row as a ModelInferRequest for one model version."""

    __slots__ = ("_header", "_parts")

    def __init__(
        self,
        manifest: Manifest,
        serving: Serving | None = None,
        explain: bool = False,
        from_score: float = 0.0,
    ) -> None:
        self._header = _model_header(manifest, serving, explain, from_score)
        parts: list[tuple[str, int, Any, float]] = []
        for f in manifest.features:
            # What an absent optional feature is sent as (``runtimes.manifest.absent_value``).
            absent = absent_value(f)
            if isinstance(f, NumberFeature):
                encoded = _tensor_bytes(f.name, "FP32", pb.InferTensorContents(fp32_contents=[0.0]))
                parts.append((f.name, 0, encoded[: -_F32.size], float(absent)))
            elif isinstance(f, CategoryFeature):
                table: dict[Any, bytes] = {
                    c: _tensor_bytes(
                        f.name, "BYTES", pb.InferTensorContents(bytes_contents=[c.encode()])
                    )
                    for c in (*f.categories, str(absent))
                }
                table[None] = table[str(absent)]
                parts.append((f.name, 1, table, 0.0))
            else:
                table = {
                    v: _tensor_bytes(f.name, "FP32", pb.InferTensorContents(fp32_contents=[x]))
                    for v, x in ((False, 0.0), (True, 1.0), (None, float(absent)))
                }
                parts.append((f.name, 1, table, 0.0))
        self._parts = tuple(parts)

    def encode(self, features: Mapping[str, FeatureScalar], request_id: str = "") -> bytes:
        """``features`` must have passed the model's FeatureValidator."""
        chunks = [self._header]
        if request_id:
            chunks.append(pb.ModelInferRequest(id=request_id).SerializeToString())
        for name, kind, encoded, absent in self._parts:
            value = features.get(name)
            if kind == 0:
                chunks.append(encoded + _F32.pack(absent if value is None else value))
            else:
                chunks.append(encoded[value])
        return b"".join(chunks)


def _model_header(
    manifest: Manifest, serving: Serving | None, explain: bool = False, from_score: float = 0.0
) -> bytes:
    """The encoded model_name (and model_version) a request addresses, and, to ``explain``, the
    outputs it asks for: the probabilities and the contributions (asking for one output means
    getting only those asked for), of the rows scoring at least ``from_score``."""
    if serving is None:
        request = pb.ModelInferRequest(model_name=manifest.served_name)
    else:
        request = pb.ModelInferRequest(
            model_name=serving.served_name, model_version=serving.served_version
        )
    if explain:
        request.outputs.add(name=manifest.outputs.probabilities)
        contributions = request.outputs.add(name=CONTRIBUTIONS_OUTPUT)
        if from_score > 0.0:
            parameter = contributions.parameters[CONTRIBUTIONS_FROM_SCORE_PARAMETER]
            parameter.string_param = repr(from_score)
    return bytes(request.SerializeToString())


def _floats(response: pb.ModelInferResponse, index: int) -> list[float]:
    output = response.outputs[index]
    contents = output.contents
    if contents.fp32_contents:
        return list(contents.fp32_contents)
    if contents.fp64_contents:
        return list(contents.fp64_contents)
    if index < len(response.raw_output_contents):
        raw = response.raw_output_contents[index]
        fmt = "<%dd" if output.datatype == "FP64" else "<%df"
        width = 8 if output.datatype == "FP64" else 4
        if len(raw) % width == 0:
            return list(struct.unpack(fmt % (len(raw) // width), raw))
    return []


def _string_param(params: Mapping[str, pb.InferParameter], key: str) -> str:
    return params[key].string_param if key in params else ""


def parse_answer(
    target: ModelTarget, endpoint: str, data: bytes, explain: bool = False
) -> ModelAnswer:
    """The score and identity in a ModelInferResponse; InvalidModelOutput when unusable."""
    return parse_answers(target, endpoint, data, 1, explain)[0]


def parse_answers(
    target: ModelTarget, endpoint: str, data: bytes, rows: int, explain: bool = False
) -> list[ModelAnswer]:
    """One answer per row of a (batched) ModelInferResponse; InvalidModelOutput when unusable.

    Identity per the endpoint's serving: the answer must come from its served name and version,
    and carry the manifest's artifact sha256 (identity ``response_parameter``) or none other.
    With ``explain``, each answer also carries its row's contributions, which must be there:
    one finite value per feature and row, and the base value."""
    serving = target.serving(endpoint)
    where = f"model {serving.served_name} at {endpoint}"
    manifest = target.manifest
    try:
        response = pb.ModelInferResponse.FromString(data)
    except Exception as e:
        raise InvalidModelOutput(f"{where} sent an unreadable response: {e}") from e
    wanted = manifest.outputs.probabilities
    index = next((i for i, o in enumerate(response.outputs) if o.name == wanted), None)
    if index is None:
        raise InvalidModelOutput(f"{where} sent no '{wanted}' output")
    probabilities = _floats(response, index)
    positive = manifest.outputs.positive_class_index
    width = len(probabilities) // rows if rows else 0
    if width <= positive or width * rows != len(probabilities):
        what = "one row" if rows == 1 else f"{rows} rows"
        raise InvalidModelOutput(f"{where} sent {len(probabilities)} probabilities for {what}")
    scores = [float(probabilities[i * width + positive]) for i in range(rows)]
    for score in scores:
        if not 0.0 <= score <= 1.0:
            raise InvalidModelOutput(f"{where} sent score {score}, outside [0, 1]")
    params = response.parameters
    sha = _string_param(params, ARTIFACT_SHA256_PARAMETER)
    # Only scoregate's runtime must name its artifact on every answer; any server that does
    # name one must name the manifest's.
    required = serving.identity == VERIFIED_BY_RESPONSE_PARAMETER
    if sha != manifest.artifact_sha256 and (sha or required):
        raise InvalidModelOutput(
            f"{where} reports artifact sha256 {sha or '(none)'}, but the manifest says "
            f"{manifest.artifact_sha256}; refusing its score"
        )
    answered = serving.served_version or target.version
    if response.model_version not in ("", answered) or response.model_name not in (
        "",
        serving.served_name,
    ):
        raise InvalidModelOutput(
            f"{where} answered as model {response.model_name!r} version "
            f"{response.model_version!r}, not {serving.served_name!r} version {answered!r}"
        )
    instance = _string_param(params, RUNTIME_INSTANCE_PARAMETER) or endpoint
    environment = _string_param(params, SCORING_ENVIRONMENT_PARAMETER)
    sha = manifest.artifact_sha256
    verified_by = serving.identity
    answers = [
        ModelAnswer(
            x, target.model, target.version, sha, instance, endpoint, rows, environment, verified_by
        )
        for x in scores
    ]
    if explain:
        _add_contributions(answers, response, target, where)
    return answers


def _add_contributions(
    answers: list[ModelAnswer], response: pb.ModelInferResponse, target: ModelTarget, where: str
) -> None:
    index = next(
        (i for i, o in enumerate(response.outputs) if o.name == CONTRIBUTIONS_OUTPUT), None
    )
    if index is None:
        raise InvalidModelOutput(f"{where} sent no '{CONTRIBUTIONS_OUTPUT}' output")
    values = _floats(response, index)
    rows, width = len(answers), len(target.manifest.features)
    if len(values) != rows * width:
        raise InvalidModelOutput(
            f"{where} sent {len(values)} contributions for {rows} rows of {width} features"
        )
    try:
        base = float(response.parameters[CONTRIBUTIONS_BASE_PARAMETER].string_param)
    except (KeyError, ValueError):
        base = math.nan
    if not math.isfinite(base):
        raise InvalidModelOutput(f"{where} sent no finite '{CONTRIBUTIONS_BASE_PARAMETER}'")
    ranker, from_score = target.reasons, target.explain_from_score
    for i, answer in enumerate(answers):
        row = values[i * width : (i + 1) * width]
        if all(map(math.isfinite, row)):
            answer.contributions = row
            answer.contributions_base = base
            answer.ranker = ranker
        elif answer.score >= from_score or not all(map(math.isnan, row)):
            # Only a row scoring below from_score may go unexplained, and then wholly.
            raise InvalidModelOutput(
                f"{where} sent contributions that are not finite for row {i} "
                f"(score {answer.score}, explained from {from_score})"
            )


_RAW_INPUT_CONTENTS = pb.ModelInferRequest.RAW_INPUT_CONTENTS_FIELD_NUMBER


class BatchEncoder:
    """Encodes N validated rows as one ModelInferRequest: an [N, 1] tensor per feature.

    The tensors' data goes in ``raw_input_contents`` (FP32 little-endian; BYTES as 4-byte length
    plus bytes per element), packed with one ``struct`` call per number feature instead of N
    protobuf floats; the tensors' headers are encoded once per batch size and kept.
    """

    __slots__ = ("_features", "_headers", "_manifest", "_model")

    _MAX_HEADERS = 1024

    def __init__(
        self,
        manifest: Manifest,
        serving: Serving | None = None,
        explain: bool = False,
        from_score: float = 0.0,
    ) -> None:
        self._manifest = manifest
        self._model = _model_header(manifest, serving, explain, from_score)
        features: list[tuple[str, dict[Any, bytes] | None, float]] = []
        for f in manifest.features:
            absent = absent_value(f)  # what an absent optional feature is sent as
            if isinstance(f, CategoryFeature):
                table: dict[Any, bytes] = {
                    c: struct.pack("<I", len(c.encode())) + c.encode()
                    for c in (*f.categories, str(absent))
                }
                table[None] = table[str(absent)]
                features.append((f.name, table, 0.0))
            else:
                features.append((f.name, None, float(absent)))
        self._features = tuple(features)
        self._headers: dict[int, bytes] = {}

    def _header(self, rows: int) -> bytes:
        header = self._headers.get(rows)
        if header is None:
            tensors = [
                pb.ModelInferRequest.InferInputTensor(
                    name=name, datatype="FP32" if table is None else "BYTES", shape=[rows, 1]
                )
                for name, table, _ in self._features
            ]
            header = bytes(pb.ModelInferRequest(inputs=tensors).SerializeToString())
            if len(self._headers) < self._MAX_HEADERS:
                self._headers[rows] = header
        return header

    def encode(self, rows: Sequence[Mapping[str, FeatureScalar]], request_id: str = "") -> bytes:
        """``rows`` must have passed the model's FeatureValidator."""
        count = len(rows)
        chunks = [self._model, self._header(count)]
        if request_id:
            chunks.append(pb.ModelInferRequest(id=request_id).SerializeToString())
        numbers = struct.Struct(f"<{count}f")
        for name, table, absent in self._features:
            if table is None:
                values = [row.get(name) for row in rows]
                # A boolean goes as 0.0/1.0 (struct packs True as 1.0).
                data = numbers.pack(*(absent if v is None else v for v in values))
            else:
                data = b"".join([table[row.get(name)] for row in rows])
            chunks.append(length_delimited(_RAW_INPUT_CONTENTS, data))
        return b"".join(chunks)


def encode_batch(
    manifest: Manifest, rows: Sequence[Mapping[str, FeatureScalar]], request_id: str = ""
) -> bytes:
    """A ModelInferRequest with one [N, 1] tensor per feature (rows passed the validator)."""
    return BatchEncoder(manifest).encode(rows, request_id)


class _Endpoint:
    """One endpoint of a model version: its ModelInfer callable, the encoders addressing the
    model as that endpoint serves it, and its metadata check when its identity needs one."""

    __slots__ = ("batch_encoder", "call", "check", "encoder", "explain")

    def __init__(
        self, target: ModelTarget, serving: Serving, call: Any, check: MetadataCheck | None
    ) -> None:
        self.explain = target.explains_at(serving)
        from_score = target.explain_from_score
        self.encoder = RequestEncoder(target.manifest, serving, self.explain, from_score)
        self.batch_encoder = BatchEncoder(target.manifest, serving, self.explain, from_score)
        self.call = call
        self.check = check


class _Route:
    """A model version's endpoints, called in turn."""

    __slots__ = ("by_endpoint", "calls", "next_index", "target")

    def __init__(self, target: ModelTarget, calls: list[tuple[str, _Endpoint]]) -> None:
        self.target = target
        self.calls = calls
        self.by_endpoint = dict(calls)
        self.next_index = itertools.cycle(range(len(calls))).__next__


class OipModelClient:
    """ModelClient over OIP v2 gRPC. Create it inside the running event loop."""

    def __init__(self, targets: Iterable[ModelTarget], tls: ClientTls | None = None) -> None:
        self._tls = tls
        self._channels: dict[str, ReopeningChannel] = {}
        # The channel each endpoint's calls are bound to: the ReopeningChannel's until it rotates.
        self._bound: dict[str, grpc.aio.Channel] = {}
        self._routes: dict[tuple[str, str], _Route] = {}
        self._checks: dict[str, list[MetadataCheck]] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        for target in targets:
            self._add(target)

    def add_targets(self, targets: Iterable[ModelTarget]) -> None:
        """Opens channels for a reloaded config's new endpoints; existing ones are kept (and
        stay open, so calls in flight on a removed endpoint finish)."""
        for target in targets:
            route = self._routes.get((target.model, target.version))
            if (
                route is None
                or route.target.servings != target.servings
                or set(route.by_endpoint) != set(target.endpoints)
                # Whether and from which score to ask for contributions is fixed in the encoders.
                or (route.target.reasons is None) != (target.reasons is None)
                or route.target.explain_from_score != target.explain_from_score
            ):
                self._add(target)

    def _channel(self, endpoint: str) -> grpc.aio.Channel:
        bound = self._bound.get(endpoint)
        if bound is None:
            reopening = ReopeningChannel(endpoint, self._tls, CHANNEL_OPTIONS)
            self._channels[endpoint] = reopening
            bound = self._bind(endpoint, reopening.channel)
        return bound

    def _bind(self, endpoint: str, channel: grpc.aio.Channel) -> grpc.aio.Channel:
        # Connect now, so the first decision does not pay for the handshake.
        channel.get_state(try_to_connect=True)
        self._bound[endpoint] = channel
        return channel

    def _add(self, target: ModelTarget) -> _Route:
        calls = [
            (endpoint, self._endpoint_on(target, endpoint, serving))
            for endpoint, serving in zip(target.endpoints, target.servings, strict=True)
        ]
        route = _Route(target, calls)
        self._routes[(target.model, target.version)] = route
        return route

    def _endpoint_on(self, target: ModelTarget, endpoint: str, serving: Serving) -> _Endpoint:
        channel = self._channel(endpoint)
        check = None
        if serving.identity == VERIFIED_BY_METADATA:
            metadata = channel.unary_unary(
                MODEL_METADATA,
                request_serializer=pb.ModelMetadataRequest.SerializeToString,
                response_deserializer=pb.ModelMetadataResponse.FromString,
            )
            check = MetadataCheck(target, endpoint, metadata)
            check.restart()
            if endpoint not in self._checks:
                self._checks[endpoint] = []
                self._watchers[endpoint] = asyncio.create_task(self._watch(endpoint, channel))
            self._checks[endpoint].append(check)
        # No serializers: the request is already bytes, and the reply is parsed (and its
        # errors classified) in parse_answer.
        call = channel.unary_unary(MODEL_INFER)
        return _Endpoint(target, serving, call, check)

    def _rebind(self, endpoint: str, channel: grpc.aio.Channel) -> None:
        """The endpoint's channel was reopened (a rotated client certificate): its calls and
        identity checks move to the new one. What answers there is checked again, as after any
        reconnect; the other endpoints are left as they are."""
        self._bind(endpoint, channel)
        watcher = self._watchers.pop(endpoint, None)
        if watcher is not None:
            watcher.cancel()
        for check in self._checks.pop(endpoint, []):
            check.cancel()
        for route in self._routes.values():
            if endpoint not in route.by_endpoint:
                continue
            for i, (name, _) in enumerate(route.calls):
                if name == endpoint:
                    serving = route.target.servings[route.target.endpoints.index(name)]
                    fresh = self._endpoint_on(route.target, endpoint, serving)
                    route.calls[i] = (name, fresh)
                    route.by_endpoint[name] = fresh

    async def _watch(self, endpoint: str, channel: grpc.aio.Channel) -> None:
        """Checks the endpoint's identities again whenever its channel is READY after having
        been anything else: what answers after a reconnect may be another server."""
        ready = grpc.ChannelConnectivity.READY
        state = channel.get_state()
        was_ready = state == ready
        while True:
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=True)
            if state == ready and not was_ready:
                for check in self._checks[endpoint]:
                    check.restart()
            was_ready = state == ready

    def _endpoint(self, target: ModelTarget, endpoint: str | None) -> tuple[str, _Endpoint]:
        route = self._routes.get((target.model, target.version)) or self._add(target)
        if endpoint is None:
            endpoint = route.calls[route.next_index()][0]
        if self._tls is not None:
            # Only a TLS channel can rotate; a plaintext one costs no lookup per call.
            current = self._channels[endpoint].channel
            if current is not self._bound[endpoint]:
                self._rebind(endpoint, current)
        return endpoint, route.by_endpoint[endpoint]

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(self._channels)

    async def infer(
        self,
        target: ModelTarget,
        features: Mapping[str, FeatureScalar],
        deadline: Deadline,
        request_id: str = "",
        endpoint: str | None = None,
    ) -> ModelAnswer:
        endpoint, at = self._endpoint(target, endpoint)
        if at.check is not None and not at.check.verified:
            await at.check.wait(deadline.remaining())
        payload = at.encoder.encode(features, request_id)
        timeout_s = deadline.remaining()
        try:
            data = await at.call(payload, timeout=timeout_s)
        except grpc.aio.AioRpcError as e:
            raise _runtime_error(target, endpoint, timeout_s, e) from None
        return parse_answer(target, endpoint, data, at.explain)

    async def infer_batch(
        self,
        target: ModelTarget,
        rows: Sequence[Mapping[str, FeatureScalar]],
        deadline: Deadline,
        request_id: str = "",
        endpoint: str | None = None,
    ) -> list[ModelAnswer]:
        endpoint, at = self._endpoint(target, endpoint)
        if at.check is not None and not at.check.verified:
            await at.check.wait(deadline.remaining())
        payload = at.batch_encoder.encode(rows, request_id)
        timeout_s = deadline.remaining()
        try:
            data = await at.call(payload, timeout=timeout_s)
        except grpc.aio.AioRpcError as e:
            raise _runtime_error(target, endpoint, timeout_s, e) from None
        return parse_answers(target, endpoint, data, len(rows), at.explain)

    async def close(self) -> None:
        for task in self._watchers.values():
            task.cancel()
        self._watchers.clear()
        for checks in self._checks.values():
            for check in checks:
                check.cancel()
        self._checks.clear()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._bound.clear()
        self._routes.clear()


def _runtime_error(
    target: ModelTarget, endpoint: str, timeout_s: float, error: grpc.aio.AioRpcError
) -> ModelRuntimeError:
    where = f"model {target.serving(endpoint).served_name} at {endpoint}"
    code = error.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return RuntimeDeadlineExceeded(f"{where} did not answer within {timeout_s * 1000:.0f} ms")
    if code in _UNAVAILABLE_CODES:
        return RuntimeUnavailable(f"{where} unavailable: {code.name}: {error.details()}")
    # The runtime's verdict on the inputs, which one row of a batch may have caused.
    refused = code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE)
    failed = RuntimeRefusedInput if refused else RuntimeFailed
    return failed(f"{where} failed: {code.name}: {error.details()}")

"""docs/routing.md's canary formula, implemented here from the doc with hashlib alone (not with
``gateway.routing.splits``), against the gateway's own routing: ``arm_of`` on compiled routes for
10,000 keys at decision points with short, 16-byte and longer names, the shadow split through
the decision service, and a real ``Score`` call whose answer says which model version answered.

A bank reproducing the split from the doc must get every key right; these tests check the doc's
steps and worked examples are exactly what the gateway computes."""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.trace import Span
from support.fake_model_client import FakeModelClient, constant

from gateway.decisions.groups import arm_of
from gateway.decisions.inputs import ScoreInput
from gateway.decisions.service import DecisionService
from gateway.loop_load import LoopLoad
from gateway.metrics import GatewayMetrics
from gateway.routing.compiled import DecisionPoint, Routes, load_routes
from gateway.server import create, load_config
from gateway.settings import GatewaySettings
from lineage.v1.record import DecisionRecord
from loadtests.local.topology import ManagedProcess
from runtimes.manifest import Manifest
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import score_request

Config = dict[str, Any]

DOC = Path(__file__).resolve().parents[2] / "docs" / "routing.md"


# The formula, step by step as docs/routing.md states it.


def doc_salt(decision_point: str) -> bytes:
    """Step 2: the name's UTF-8 bytes, zero-padded to 16; a longer name is hashed down to 16."""
    raw = decision_point.encode("utf-8")
    if len(raw) > 16:
        return hashlib.blake2b(raw, digest_size=16).digest()
    return raw + b"\x00" * (16 - len(raw))


def doc_digest(decision_point: str, key: str) -> bytes:
    """Step 3: BLAKE2b with an 8-byte digest length, that salt, no key, no personalization."""
    return hashlib.blake2b(
        key.encode("utf-8"), digest_size=8, salt=doc_salt(decision_point)
    ).digest()


def doc_bucket(decision_point: str, key: str) -> int:
    """Step 4: the digest as an unsigned big-endian integer, modulo 10,000."""
    return int.from_bytes(doc_digest(decision_point, key), "big", signed=False) % 10_000


def doc_buckets_on(weight: float) -> int:
    """Step 5: round(weight * 10000 / 100), ties to even."""
    return round(weight * 10000 / 100)


def doc_arm(decision_point: str, key: str, weight: float) -> str:
    """Step 6: canary when the bucket is below the threshold."""
    return "canary" if doc_bucket(decision_point, key) < doc_buckets_on(weight) else "primary"


# Decision points: short, one byte, exactly 16 bytes, 17 bytes, long, and names whose UTF-8 byte
# length differs from their character count (16 bytes in 15 characters; 19 bytes in 16).
POINTS: dict[str, float] = {
    "card-fraud": 37.5,
    "c": 5.0,
    "0123456789abcdef": 50.0,
    "0123456789abcdefg": 12.34,
    "card-fraud-ecommerce-eu-weekend-high-value-merchants-v2": 90.0,
    "zahlungsprüfung": 0.25,
    "kartenprüfung-öä": 62.5,
}
REQUEST_ID_POINT = "card-fraud-by-request-id-not-entity"

KEYS = (
    [f"cust-{i:06d}" for i in range(9_000)]
    + [f"kunde-müller-{i}-ß€" for i in range(500)]
    + [f"{i:04d}-" + "x" * 250 for i in range(500)]  # 255 characters, near the 256 limit
)


def test_the_key_sets_are_what_the_names_claim() -> None:
    assert len(KEYS) == len(set(KEYS)) == 10_000
    sizes = {name: len(name.encode()) for name in POINTS}
    assert sizes["0123456789abcdef"] == 16 and sizes["0123456789abcdefg"] == 17
    assert (len("zahlungsprüfung"), sizes["zahlungsprüfung"]) == (15, 16)
    assert (len("kartenprüfung-öä"), sizes["kartenprüfung-öä"]) == (16, 19)


def _worked_examples() -> list[tuple[str, str, str, str, int]]:
    """The rows of the doc's worked-example table: (name, key, salt hex, digest hex, bucket)."""
    text = DOC.read_text()
    table = text[text.index("Worked examples") :].split("\n\n")[1]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = re.fullmatch(r"`(.+)` \((\d+)\)", cells[0])
        assert name is not None, line
        assert len(name[1].encode()) == int(name[2]), line
        salt = re.fullmatch(r"`([0-9a-f]+)`(?: \+ (\d+) zero bytes)?", cells[2])
        assert salt is not None, line
        salt_hex = salt[1] + "00" * int(salt[2] or 0)
        rows.append((name[1], cells[1].strip("`"), salt_hex, cells[3].strip("`"), int(cells[4])))
    return rows


def test_the_docs_worked_examples_follow_from_the_documented_steps() -> None:
    examples = _worked_examples()
    assert len(examples) >= 5
    assert any(len(name.encode()) > 16 for name, *_ in examples)
    for name, key, salt_hex, digest_hex, bucket in examples:
        assert doc_salt(name).hex() == salt_hex, name
        assert doc_digest(name, key).hex() == digest_hex, (name, key)
        assert doc_bucket(name, key) == bucket, (name, key)
        # What the doc warns about: an 8-byte digest length is not a prefix of BLAKE2b-512.
        prefix = hashlib.blake2b(key.encode(), salt=doc_salt(name)).digest()[:8]
        assert prefix.hex() != digest_hex


@pytest.fixture
def compile_points(
    manifests: dict[tuple[str, str], Manifest],
    demo_config: Callable[[str], Config],
    tmp_path: Path,
) -> Callable[[dict[str, float]], Routes]:
    """Routes with one decision point per name, each card-fraud v1 with a canary on v2."""

    def build(weights: dict[str, float], stickiness: dict[str, str] | None = None) -> Routes:
        config = copy.deepcopy(demo_config("127.0.0.1:1"))
        template = config["decision_points"]["card-fraud"]
        points = {}
        for name, weight in weights.items():
            point = copy.deepcopy(template)
            point["canary"] = {
                "target": {"model": "card-fraud", "version": "2"},
                "weight": weight,
                "stickiness_key": (stickiness or {}).get(name, "entity_key"),
            }
            points[name] = point
        config["decision_points"] = points
        path = tmp_path / "routes.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        return load_routes(path, manifests)

    return build


def _row(point: str, key: str, request_id: str = "req-1") -> ScoreInput:
    return ScoreInput(request_id, point, key, {})


def test_the_gateway_routes_10000_keys_to_the_documented_arm_at_every_decision_point(
    compile_points: Callable[..., Routes],
) -> None:
    routes = compile_points(POINTS)
    for name, weight in POINTS.items():
        point = routes.decision_points[name]
        assert point.canary is not None and point.canary.buckets == doc_buckets_on(weight)
        wrong = [k for k in KEYS if arm_of(point, _row(name, k))[1] != doc_arm(name, k, weight)]
        assert wrong == [], f"{name}: {len(wrong)} of {len(KEYS)} keys differ, e.g. {wrong[:3]}"
        canary = sum(arm_of(point, _row(name, k))[1] == "canary" for k in KEYS)
        assert 0 < canary < len(KEYS) or weight in (0, 100)


def _at(point: DecisionPoint, buckets: int) -> DecisionPoint:
    assert point.canary is not None
    return replace(point, canary=replace(point.canary, buckets=buckets))


def test_the_documented_bucket_is_the_gateways_bucket_exactly(
    compile_points: Callable[..., Routes],
) -> None:
    """A key is on the primary with its documented bucket as the threshold, and on the canary
    with one more: the gateway's bucket is the doc's, not merely on the same side of a weight."""
    routes = compile_points(POINTS)
    for name in POINTS:
        compiled = routes.decision_points[name]
        by_bucket: dict[int, list[str]] = {}
        for k in KEYS:
            by_bucket.setdefault(doc_bucket(name, k), []).append(k)
        for bucket, keys in by_bucket.items():
            below, above = _at(compiled, bucket), _at(compiled, bucket + 1)
            for k in keys:
                assert arm_of(below, _row(name, k))[1] == "primary", (name, k, bucket)
                assert arm_of(above, _row(name, k))[1] == "canary", (name, k, bucket)


def test_with_request_id_stickiness_the_request_id_is_the_key(
    compile_points: Callable[..., Routes],
) -> None:
    routes = compile_points({REQUEST_ID_POINT: 50.0}, {REQUEST_ID_POINT: "request_id"})
    point = routes.decision_points[REQUEST_ID_POINT]
    for i, entity in enumerate(KEYS):
        request_id = f"req-{i:06d}"
        got = arm_of(point, _row(REQUEST_ID_POINT, entity, request_id))[1]
        assert got == doc_arm(REQUEST_ID_POINT, request_id, 50.0), (entity, request_id)


def test_the_threshold_is_the_documented_rounding_and_the_worked_weights_hold(
    compile_points: Callable[..., Routes],
) -> None:
    weights = [0.0, 0.01, 0.125, 0.135, 12.34, 28.29, 28.3, 99.99, 100.0]
    routes = compile_points({f"dp-{i}": w for i, w in enumerate(weights)})
    for i, w in enumerate(weights):
        canary = routes.decision_points[f"dp-{i}"].canary
        assert canary is not None and canary.buckets == doc_buckets_on(w), w
    assert [doc_buckets_on(w) for w in (12.34, 0.125, 0.135)] == [1234, 12, 14]
    # The doc's sentence about cust-000042 at card-fraud, 28.29 against 28.30.
    routes = compile_points({"card-fraud": 28.29})
    assert arm_of(routes.decision_points["card-fraud"], _row("card-fraud", "cust-000042"))[1] == (
        "primary"
    )
    routes = compile_points({"card-fraud": 28.30})
    assert arm_of(routes.decision_points["card-fraud"], _row("card-fraud", "cust-000042"))[1] == (
        "canary"
    )


def test_sticky_across_weight_changes_as_documented(
    compile_points: Callable[..., Routes],
) -> None:
    """Raising moves exactly the keys in [round(100 w1), round(100 w2)); lowering and raising
    again brings back the same keys; a new canary target keeps them."""
    name = "card-fraud-ecommerce-eu"

    def canary_keys(weight: float) -> set[str]:
        point = compile_points({name: weight}).decision_points[name]
        return {k for k in KEYS if arm_of(point, _row(name, k))[1] == "canary"}

    at = {w: canary_keys(w) for w in (5.0, 25.0, 50.0)}
    moved = at[25.0] - at[5.0]
    assert at[5.0] <= at[25.0] <= at[50.0]
    assert moved == {k for k in KEYS if 500 <= doc_bucket(name, k) < 2500}
    assert canary_keys(5.0) == at[5.0] and canary_keys(25.0) == at[25.0]  # down and up again
    point = compile_points({name: 25.0}).decision_points[name]
    assert point.canary is not None
    other_target = replace(point.canary, target=point.primary)
    kept = replace(point, canary=other_target)
    assert {k for k in KEYS if arm_of(kept, _row(name, k))[1] == "canary"} == at[25.0]


class _Records:
    records_on_spans = False

    def __init__(self) -> None:
        self.records: list[DecisionRecord] = []

    def check_capacity(self) -> None:
        pass

    async def emit(self, record: DecisionRecord, span: Span) -> None:
        self.records.append(record)

    async def emit_batch(self, records: Sequence[DecisionRecord], span: Span) -> None:
        self.records.extend(records)


async def test_the_shadow_split_uses_the_shadow_salt_and_the_entity_key(
    manifests: dict[tuple[str, str], Manifest],
    demo_config: Callable[[str], Config],
    tmp_path: Path,
) -> None:
    name = "card-fraud-ecommerce-eu"
    config = copy.deepcopy(demo_config("127.0.0.1:1"))
    point = config["decision_points"].pop("card-fraud")
    point["canary"] = {
        "target": {"model": "card-fraud", "version": "2"},
        "weight": 30,
        "stickiness_key": "request_id",  # the shadow split ignores it
    }
    point["shadows"] = [
        {"target": {"model": "card-fraud", "version": "2"}, "percent": 10},
        {"target": {"model": "card-fraud", "version": "2"}, "percent": 50},
    ]
    config["decision_points"][name] = point
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(config))
    sink = _Records()
    service = DecisionService(
        load_routes(path, manifests), FakeModelClient(auto=constant(0.1)), None, sink, "test:1",
        metrics=GatewayMetrics(), shadow_max_in_flight=10_000,
    )  # fmt: skip
    features = sample_requests("card-fraud", 1, seed=7)[0]
    entities = KEYS[:400]
    for i, entity in enumerate(entities):
        record = await service.score(ScoreInput(f"r-{i}", name, entity, features))
        assert record.arm == doc_arm(name, f"r-{i}", 30)
    await service.shadows.drain(5.0)
    shadowed: dict[str, int] = {}
    for r in sink.records:
        if r.arm == "shadow":
            shadowed[r.entity_key] = shadowed.get(r.entity_key, 0) + 1
    salt_name = f"{name}/shadow"
    want = {
        e: (doc_bucket(salt_name, e) < 1000) + (doc_bucket(salt_name, e) < 5000) for e in entities
    }
    assert shadowed == {e: n for e, n in want.items() if n}


async def test_a_real_score_call_is_answered_by_the_documented_arm(
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], Config],
    write_routes: Callable[[Path, Config], Path],
    tmp_path: Path,
) -> None:
    """Through the gateway's gRPC API: the ScoreResponse names the version that answered."""
    name = "card-fraud-ecommerce-eu-weekend"  # 30 bytes: the salt is hashed down to 16
    config = demo_config(runtime.address)
    point = copy.deepcopy(config["decision_points"]["card-fraud"])
    point["canary"] = {"target": {"model": "card-fraud", "version": "2"}, "weight": 50}
    config["decision_points"][name] = point
    routes_file = write_routes(tmp_path / "routes.yaml", config)
    settings = GatewaySettings(
        routes=routes_file,
        model_dir=model_dir,
        port=0,
        reload_interval_s=0,
        drain_delay_s=0,
        plaintext=True,
        open_access=True,
    )
    gateway = await create(settings, load_config(settings), LoopLoad())
    try:
        await gateway.start()
        entities = KEYS[:60] + KEYS[9_000:9_020] + KEYS[9_500:9_520]
        features = sample_requests("card-fraud", len(entities), seed=11)
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            for i, (entity, f) in enumerate(zip(entities, features, strict=True)):
                answer = await stub.Score(score_request(f"r{i}", name, entity, f))
                want = doc_arm(name, entity, 50.0)
                assert (answer.arm, answer.model_version) == (
                    want,
                    "2" if want == "canary" else "1",
                ), entity
        arms = {doc_arm(name, e, 50.0) for e in entities}
        assert arms == {"canary", "primary"}
    finally:
        await gateway.close()

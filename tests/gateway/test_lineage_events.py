"""Route changes and manifests reach the lineage store even when it comes up after the gateway."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import yaml
from google.protobuf.timestamp_pb2 import Timestamp

from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from loadtests.local.topology import (
    ManagedProcess,
    demo_routes,
    free_port,
    start_gateway,
    start_lineage,
)
from runtimes.manifest import load_manifests


async def test_changes_and_manifests_are_delivered_once_the_store_is_up(
    model_dir: Path, tmp_path: Path
) -> None:
    manifests = load_manifests(model_dir)
    routes = tmp_path / "routes.yaml"
    # No runtime is needed: nothing is scored here.
    routes.write_text(yaml.safe_dump(demo_routes(manifests, f"127.0.0.1:{free_port()}")))
    lineage_address = f"127.0.0.1:{free_port()}"
    started_at = time.time()
    gateway = start_gateway(routes, model_dir, tmp_path, lineage_endpoint=lineage_address)
    processes: list[ManagedProcess] = [gateway]
    try:
        await asyncio.sleep(1.0)  # the gateway has been retrying against nothing meanwhile
        port = lineage_address.rsplit(":", 1)[1]
        processes.append(
            start_lineage(tmp_path / "lineage.db", tmp_path, extra_args=["--port", port])
        )
        async with grpc.aio.insecure_channel(lineage_address) as channel:
            stub = lineage_pb2_grpc.LineageServiceStub(channel)
            at = Timestamp()
            at.FromNanoseconds(time.time_ns())
            deadline = time.monotonic() + 20
            while True:
                serving = await stub.GetServingAt(
                    lineage_pb2.GetServingAtRequest(decision_point="card-fraud", at=at), timeout=5
                )
                if serving.targets or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            primary = [t for t in serving.targets if t.arm == "primary"]
            assert [(t.model_name, t.model_version) for t in primary] == [("card-fraud", "1")]
            assert serving.in_force.changed_at.ToSeconds() >= int(started_at)
            for manifest in manifests.values():
                kept = await stub.GetModel(
                    lineage_pb2.GetModelRequest(artifact_sha256=manifest.artifact_sha256),
                    timeout=5,
                )
                assert manifest.name in kept.manifest_json
    finally:
        for proc in reversed(processes):
            proc.stop()

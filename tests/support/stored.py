"""Waiting for a decision to reach the lineage store: the gateway acknowledges a decision once
its record is durable in the outbox, and the store has it moments later."""

from __future__ import annotations

import asyncio
import time

import grpc

from lineage.v1 import lineage_pb2, lineage_pb2_grpc


async def get_when_stored(
    lineage: lineage_pb2_grpc.LineageServiceStub, decision_id: str, timeout_s: float = 30.0
) -> lineage_pb2.DecisionRecord:
    """The stored decision; raises the last NOT_FOUND once ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await lineage.GetDecision(
                lineage_pb2.GetDecisionRequest(decision_id=decision_id), timeout=5
            )
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)

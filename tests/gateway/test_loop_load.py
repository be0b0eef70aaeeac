"""The event loop's busy share, as the micro-batcher reads it: near 1 while callbacks keep the
loop running, near 0 while it waits for events."""

from __future__ import annotations

import asyncio
import time

from gateway.loop_load import LoopLoad


def test_the_busy_share_follows_what_the_loop_does() -> None:
    load = LoopLoad()

    async def work(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            step = time.perf_counter() + 0.002
            while time.perf_counter() < step:  # a callback holding the loop, as under load
                pass
            await asyncio.sleep(0)

    async def scenario() -> tuple[float, float]:
        await work(0.6)
        busy = load.busy
        await asyncio.sleep(0.6)  # nothing to do: the loop waits in select
        await asyncio.sleep(0)
        return busy, load.busy

    with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(load)) as runner:
        busy, idle = runner.run(scenario())
    assert busy > 0.9
    assert idle < 0.1

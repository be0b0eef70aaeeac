"""Which exported checkpoint first covers a chain entry, from the store's checkpoint file.

The file only grows (``governance.chain.append_checkpoint``: one JSON line per export, sizes
never decreasing), so it is read once and then only from where the last read stopped; a lookup
is a bisection over the sizes. A file that shrank or was replaced is read again from the start.
"""

from __future__ import annotations

import bisect
import os
import threading
from pathlib import Path

import orjson

from governance.chain import Checkpoint


class CheckpointIndex:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._identity: tuple[int, int] = (-1, -1)
        self._offset = 0
        self._sizes: list[int] = []
        self._checkpoints: list[Checkpoint] = []

    def covering(self, seq: int) -> Checkpoint | None:
        """The first checkpoint whose size reaches ``seq``; None when none does yet."""
        with self._lock:
            self._catch_up()
            at = bisect.bisect_left(self._sizes, seq)
            return self._checkpoints[at] if at < len(self._checkpoints) else None

    def _catch_up(self) -> None:
        try:
            st = os.stat(self._path)
        except OSError:
            return
        if (st.st_dev, st.st_ino) != self._identity or st.st_size < self._offset:
            self._identity, self._offset = (st.st_dev, st.st_ino), 0
            self._sizes, self._checkpoints = [], []
        if st.st_size == self._offset:
            return
        with self._path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        # A torn last line (an export in progress) is read again next time.
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            try:
                found = orjson.loads(line)
                checkpoint = Checkpoint(
                    int(found["size"]), str(found["head_sha256"]), int(found["at_us"])
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            if not self._sizes or checkpoint.size >= self._sizes[-1]:
                self._sizes.append(checkpoint.size)
                self._checkpoints.append(checkpoint)

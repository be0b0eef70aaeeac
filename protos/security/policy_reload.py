"""Hot reload of the access policy, polled like the gateway's routing file.

A ConfigMap update swaps a symlink, which inotify on the file does not see; so every
``interval_s`` the file is read (through the symlinks) and its content hash compared with the
policy in force. A changed file is parsed off the event loop; if valid it governs the next calls
(``current``), and if not the old policy stays in force and the problem is logged once, with its
path, until the content changes again. Calls in flight keep the policy they were checked under.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from security.errors import SecurityConfigError
from security.policy import AccessPolicy, parse_policy, policy_version

log = logging.getLogger(__name__)


class PolicyWatcher:
    def __init__(
        self,
        path: Path,
        policy: AccessPolicy,
        on_reload: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.current = policy
        self.on_reload = on_reload
        self._refused = ""

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError as e:
            log.error("access policy %s: cannot read (%s); still enforcing %s",
                      self.path, e.strerror, self.current.version)  # fmt: skip
            return None

    async def check(self) -> bool | None:
        """One poll: True applied, False refused, None unchanged (or already refused)."""
        content = await asyncio.to_thread(self._read)
        if content is None:
            return None
        version = policy_version(content)
        if version in (self.current.version, self._refused):
            return None
        try:
            policy = await asyncio.to_thread(parse_policy, content, str(self.path))
        except SecurityConfigError as e:
            self._refused = version
            log.error("access policy change refused; still enforcing %s: %s",
                      self.current.version, e)  # fmt: skip
            if self.on_reload is not None:
                self.on_reload("failed")
            return False
        previous, self.current, self._refused = self.current.version, policy, ""
        log.info("access policy %s in force (was %s)", policy.version, previous)
        if self.on_reload is not None:
            self.on_reload("ok")
        return True

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.check()
            except Exception:
                log.exception("access policy check failed; still enforcing the old policy")

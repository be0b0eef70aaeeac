"""Hot reload of the routing config, including a Kubernetes ConfigMap's atomic symlink swap.

A ConfigMap volume holds ``routes.yaml -> ..data/routes.yaml`` and ``..data -> ..<timestamp>``;
an update writes a new timestamped folder and swaps ``..data`` in one rename, so inotify on the
file sees nothing. So the watcher polls: every ``interval_s`` it reads the routing file (through
the symlinks) and the rules files it names, and compares the content hash with the one serving.
A new version is compiled off the event loop; if valid it is applied to the next requests (those
in flight keep the config they started with), a route-change event is emitted and the reload
counted ``ok``; if not, the problem is logged with its path, counted ``failed``, and the old
config keeps serving. A refused version is not reported again until its content or the reason
changes, but it is compiled and checked every poll: a config refused for want of approvals
(``gateway.routing.approvals``) is applied once the versions it routes to are approved.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from gateway.errors import ConfigError
from gateway.metrics import GatewayMetrics
from gateway.routing.approvals import ApprovalGate
from gateway.routing.changes import RouteChange, RouteChangeSink, arm_targets, describe_changes
from gateway.routing.compiled import ConfigFiles, Routes, compile_routes, read_config_files
from runtimes.manifest import MANIFEST_FILE, ManifestError
from runtimes.reasons import load_checked_models

log = logging.getLogger(__name__)


def _compile(path: Path, model_dir: Path) -> tuple[Routes, ConfigFiles]:
    files, config = read_config_files(path)
    try:
        models = load_checked_models(model_dir)
        routes = compile_routes(
            config, models.manifests, files.version, files.rules, models.catalogues
        )
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
    return routes, files


class RoutesServer(Protocol):
    """What the watcher reloads: the routes serving now and a way to swap them (the decision
    service), kept narrow so that routing need not know the service."""

    @property
    def routes(self) -> Routes: ...

    @property
    def metrics(self) -> GatewayMetrics: ...

    def apply(self, routes: Routes) -> None: ...


class ConfigWatcher:
    def __init__(
        self,
        path: Path,
        model_dir: Path,
        service: RoutesServer,
        events: RouteChangeSink,
        instance: str,
        files: ConfigFiles | None = None,
        gate: ApprovalGate | None = None,
    ) -> None:
        self._path = path
        self._model_dir = model_dir
        self._service = service
        self._events = events
        self._instance = instance
        self._files = files
        self._gate = gate
        self._refused = ""
        self._fingerprint_seen = ""

    def announce(self, unapproved: tuple[str, ...] = ()) -> None:
        """Emits the start-up config as a route change from nothing; ``unapproved``: what its
        approvals check accepted under warn."""
        self._service.metrics.unapproved_arms.set(len(unapproved))
        self._emit(self._service.routes, "", ("started with this config",), {}, unapproved)

    def _emit(
        self,
        routes: Routes,
        previous: str,
        changes: tuple[str, ...],
        diff: dict[str, Any],
        unapproved: tuple[str, ...] = (),
    ) -> None:
        self._events.emit(
            RouteChange(
                changed_at_us=time.time_ns() // 1000,
                config_version=routes.config_version,
                previous_version=previous,
                changes=changes,
                source=str(self._path),
                gateway_instance=self._instance,
                targets=arm_targets(routes),
                diff=diff,
                unapproved=unapproved,
            )
        )

    def _raw_version(self) -> str:
        try:
            return hashlib.sha256(self._path.read_bytes()).hexdigest()
        except OSError as e:
            return f"unreadable: {e}"

    def _fingerprint(self) -> str:
        """What the config depends on, cheaply: file bytes, and the manifests' names and mtimes.

        Compiling loads and validates every manifest; doing that each poll held the GIL for
        milliseconds every second, which showed in the gateway's tail latency.
        """
        digest = hashlib.sha256()
        paths = [self._path]
        config = self._service.routes.config
        if config is not None:
            paths += [self._path.parent / entry.file for entry in config.rules.values()]
        for path in paths:
            try:
                digest.update(path.read_bytes())
            except OSError as e:
                digest.update(f"unreadable {path}: {e}".encode())
        for manifest in sorted(self._model_dir.rglob(MANIFEST_FILE)):
            stat = manifest.stat()
            digest.update(f"{manifest}:{stat.st_mtime_ns}:{stat.st_size}".encode())
        return digest.hexdigest()

    async def check(self) -> bool | None:
        """One poll: True applied, False refused, None unchanged (or already refused)."""
        fingerprint = await asyncio.to_thread(self._fingerprint)
        # While a version is refused, compile every poll: the fix may be in a rules file that only
        # the refused version names, which the fingerprint does not cover.
        if fingerprint == self._fingerprint_seen and not self._refused:
            return None
        self._fingerprint_seen = fingerprint
        metrics = self._service.metrics
        current = self._service.routes
        try:
            routes, files = await asyncio.to_thread(_compile, self._path, self._model_dir)
            unapproved = await self._gate.check(routes) if self._gate is not None else ()
        except (ConfigError, ManifestError) as e:
            # Identify the refused content by the raw file, which may not even parse.
            # And by the reason: a refusal whose cause moved on (one approval of two recorded,
            # the store back) is reported again.
            refused = await asyncio.to_thread(self._raw_version) + f"\n{e}"
            if refused == self._refused:
                return None
            self._refused = refused
            metrics.config_reloads.labels("failed").inc()
            log.error(
                "routing config change refused; still serving %s: %s", current.config_version, e
            )
            return False
        if routes.config_version == current.config_version:
            return None
        self._refused = ""
        self._service.apply(routes)
        metrics.config_reloads.labels("ok").inc()
        metrics.unapproved_arms.set(len(unapproved))
        old_rules = self._files.rules if self._files is not None else None
        assert routes.config is not None, "compiled routes keep their parsed config"
        changes, diff = describe_changes(current.config, routes.config, old_rules, files.rules)
        self._files = files
        log.info(
            "routing config %s applied (was %s)", routes.config_version, current.config_version
        )
        self._emit(routes, current.config_version, changes, diff, unapproved)
        return True

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.check()
            except Exception:
                log.exception("routing config check failed; still serving the old config")

"""Where the routes live, behind one seam: read them, and replace them with an edit of them.

- ``FileRoutes``: the local routes file, replaced atomically (a new file beside it, fsync'd,
  renamed over it), so the gateway's reload reads either the old content or the new, never half.
- ``ConfigMapRoutes``: the routes ConfigMap in a cluster, through the Kubernetes API. The patch
  carries the ``resourceVersion`` it was computed from, so a concurrent change (an SRE's
  ``kubectl edit``, a ``helm upgrade``) makes the API server answer 409 Conflict rather than be
  overwritten; the edit is then recomputed on the fresh content and sent again. The kubelet
  delivers the new content to the gateway pods' mounted file, and their reload picks it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from gateway.canary.errors import RoutesError

Edit = Callable[[str], str]


class RoutesStore(Protocol):
    @property
    def location(self) -> str:
        """Where the routes are, for the records: ``file:<path>`` or ``configmap:<ns>/<name>``."""
        ...

    async def read(self) -> str: ...

    async def update(self, edit: Edit) -> str:
        """Replaces the routes with ``edit(current)``; returns what was written."""
        ...


class FileRoutes:
    def __init__(self, path: Path) -> None:
        self._path = path

    @property
    def location(self) -> str:
        return f"file:{self._path}"

    async def read(self) -> str:
        return await asyncio.to_thread(self._read)

    def _read(self) -> str:
        try:
            return self._path.read_text()
        except OSError as e:
            raise RoutesError(f"{self._path}: cannot read the routes: {e.strerror}") from None

    async def update(self, edit: Edit) -> str:
        return await asyncio.to_thread(self._update, edit)

    def _update(self, edit: Edit) -> str:
        new = edit(self._read())
        # A symlinked routes file keeps its link: the file it points to is replaced.
        target = self._path.resolve()
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(new)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as e:
            raise RoutesError(f"{self._path}: cannot write the routes: {e.strerror}") from None
        return new


CONFLICT_RETRIES = 5


class ConfigMapRoutes:
    """``api`` is a ``kubernetes.client.CoreV1Api``; its calls are blocking, so they run in a
    thread."""

    def __init__(self, api: Any, namespace: str, name: str, key: str = "routes.yaml") -> None:
        self._api = api
        self._namespace = namespace
        self._name = name
        self._key = key

    @property
    def location(self) -> str:
        return f"configmap:{self._namespace}/{self._name}#{self._key}"

    async def read(self) -> str:
        text, _ = await asyncio.to_thread(self._get)
        return text

    def _get(self) -> tuple[str, str]:
        from kubernetes.client.exceptions import ApiException

        try:
            cm = self._api.read_namespaced_config_map(self._name, self._namespace)
        except ApiException as e:
            raise RoutesError(f"{self.location}: cannot read: {e.status} {e.reason}") from None
        data = cm.data or {}
        if self._key not in data:
            raise RoutesError(f"{self.location}: the ConfigMap has no key {self._key!r}")
        return str(data[self._key]), str(cm.metadata.resource_version)

    async def update(self, edit: Edit) -> str:
        return await asyncio.to_thread(self._update, edit)

    def _update(self, edit: Edit) -> str:
        from kubernetes.client.exceptions import ApiException

        for _ in range(CONFLICT_RETRIES + 1):
            text, version = self._get()
            new = edit(text)
            body = {"metadata": {"resourceVersion": version}, "data": {self._key: new}}
            try:
                self._api.patch_namespaced_config_map(
                    self._name,
                    self._namespace,
                    body,
                    _content_type="application/merge-patch+json",
                )
                return new
            except ApiException as e:
                if e.status != 409:
                    raise RoutesError(
                        f"{self.location}: patch refused: {e.status} {e.reason}"
                    ) from None
        raise RoutesError(
            f"{self.location}: changed by someone else on each of {CONFLICT_RETRIES + 1} "
            "attempts (409 Conflict); not patched"
        )


def kubernetes_api(
    api_url: str = "", token_file: Path | None = None, ca_file: Path | None = None
) -> Any:
    """A CoreV1Api: at ``api_url`` when given (with a bearer token file and CA bundle), else
    the pod's own service account (in-cluster configuration)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if api_url:
        configuration.host = api_url
        if token_file is not None:
            configuration.api_key = {"authorization": token_file.read_text().strip()}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        if ca_file is not None:
            configuration.ssl_ca_cert = str(ca_file)
    else:
        # The client leaves this one function unannotated.
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.CoreV1Api(client.ApiClient(configuration))

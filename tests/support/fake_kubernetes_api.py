"""A fake Kubernetes API server: the few ConfigMap endpoints the controller's client calls.

No cluster runs here, so this stands in for the API server, named as such, at the transport
seam: a real HTTP server on 127.0.0.1 (port 0) that the real ``kubernetes`` client talks to.
It keeps ConfigMaps in memory and implements GET and PATCH (JSON merge patch) of
``/api/v1/namespaces/<ns>/configmaps/<name>`` with optimistic concurrency as the API server
does it: a patch carrying a ``metadata.resourceVersion`` other than the current one is refused
with 409 Conflict. ``concurrent_edits`` makes the next N patches race a write from someone else
(an SRE's ``kubectl edit``), which bumps the version just before the patch is checked.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/configmaps/([^/?]+)")


@dataclass
class FakeKubernetesApi:
    configmaps: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    versions: dict[tuple[str, str], int] = field(default_factory=dict)
    concurrent_edits: int = 0
    """Patches still to be raced by another writer (each then answered 409)."""
    conflicts: int = 0
    patches: list[dict[str, Any]] = field(default_factory=list)
    """Every patch body received, accepted or not."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def put(self, namespace: str, name: str, data: dict[str, str]) -> None:
        with self._lock:
            self.configmaps[(namespace, name)] = dict(data)
            self.versions[(namespace, name)] = self.versions.get((namespace, name), 100) + 1

    def start(self) -> FakeKubernetesApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _key(self) -> tuple[str, str] | None:
                m = _PATH.match(self.path)
                if m is None or (m.group(1), m.group(2)) not in api.configmaps:
                    self._answer(404, _status(404, "NotFound", f"{self.path} not found"))
                    return None
                return m.group(1), m.group(2)

            def do_GET(self) -> None:
                key = self._key()
                if key is not None:
                    with api._lock:
                        self._answer(200, api._object(key))

            def do_PATCH(self) -> None:
                key = self._key()
                if key is None:
                    return
                if self.headers.get("Content-Type") != "application/merge-patch+json":
                    self._answer(415, _status(415, "UnsupportedMediaType", "merge patch only"))
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with api._lock:
                    api.patches.append(body)
                    if api.concurrent_edits:
                        api.concurrent_edits -= 1
                        api.versions[key] += 1
                        api.configmaps[key]["edited-by"] = "someone else"
                    sent = body.get("metadata", {}).get("resourceVersion")
                    if sent is not None and sent != str(api.versions[key]):
                        api.conflicts += 1
                        message = (
                            f'Operation cannot be fulfilled on configmaps "{key[1]}": the '
                            "object has been modified; please apply your changes to the latest "
                            "version and try again"
                        )
                        self._answer(409, _status(409, "Conflict", message))
                        return
                    api.configmaps[key].update(body.get("data", {}))
                    api.versions[key] += 1
                    self._answer(200, api._object(key))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _object(self, key: tuple[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "namespace": key[0],
                "name": key[1],
                "resourceVersion": str(self.versions[key]),
            },
            "data": dict(self.configmaps[key]),
        }

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }

"""The risk page built from the store's settings and what the store already holds: its TLS,
its authenticator and access policy, its access log and pseudonyms. ``serve`` starts it beside
the gRPC listener.

Under open access the page authenticates no one, so it listens only on loopback unless
``--web-allow-open`` says otherwise; served without TLS beyond loopback, it logs a warning as
the gRPC listener does.
"""

from __future__ import annotations

import logging

from governance.audit import AccessLog
from governance.errors import ConfigurationError
from governance.pseudonyms import EntityPseudonyms
from governance.security_setup import StoreSecurity, is_loopback
from governance.settings import LineageSettings
from governance.store import LineageStore
from governance.web.access import PageAccess
from governance.web.app import build_app
from governance.web.listener import PeerCertificates, WebListener
from governance.web.tls import RotatingContext
from governance.web.views import PageQueries

log = logging.getLogger(__name__)


def build_page(
    settings: LineageSettings,
    store: LineageStore,
    security: StoreSecurity,
    audit: AccessLog | None,
    pseudonyms: EntityPseudonyms | None,
) -> WebListener | None:
    """The page's listener, not yet started; None when ``web_port`` is unset."""
    if settings.web_port is None:
        return None
    host = settings.web_host
    if security.access.open and not is_loopback(host) and not settings.web_allow_open:
        raise ConfigurationError(
            f"--web-host {host}: under open access the risk page would show every decision to "
            "anyone who reaches it; listen on loopback, configure an access policy, or set "
            "--web-allow-open true behind an authenticating proxy"
        )
    if security.server_tls is None and not is_loopback(host):
        log.warning(
            "risk page served over PLAINTEXT HTTP on %s: decisions and credentials cross the "
            "network unencrypted",
            host,
        )
    context = None if security.server_tls is None else RotatingContext(security.server_tls).context
    peers = PeerCertificates()
    queries = PageQueries(store, pseudonyms, settings.checkpoint_file, settings.web_model_dir)
    access = PageAccess(security.access, audit, pseudonyms, peers)
    return WebListener(build_app(queries, access), host, settings.web_port, context, peers)

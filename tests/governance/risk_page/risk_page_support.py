"""Helpers for the risk page's tests: the page's address from a store's ready file, and the
decision ids a page lists."""

from __future__ import annotations

import re

from loadtests.local.topology import ManagedProcess

_LINK = re.compile(r'href="/decisions/([0-9a-f-]{36})"')


def page_url(process: ManagedProcess) -> str:
    return str(process.info["web"])


def listed_ids(html: str) -> list[str]:
    """The decision ids a search page links to, in page order."""
    return _LINK.findall(html)


def error_text(html: str) -> str:
    found = re.search(r'<p id="error">(.*?)</p>', html, re.S)
    assert found is not None, html[:400]
    return found.group(1).replace("&#39;", "'")

"""The test suite's own machinery: the PostgreSQL server resolver in tests/support/postgres.py."""

from __future__ import annotations

import socket

import psycopg
import pytest
from support import postgres


def _nothing_listens() -> str:
    """A server URL on a loopback port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}"


def test_falls_back_to_a_throwaway_server_when_the_configured_one_does_not_answer() -> None:
    configured = _nothing_listens()
    if postgres.find_binaries() is None:
        pytest.skip(f"no initdb/pg_ctl on this machine ({postgres.BIN_SETTING} names a directory)")
    resolution = postgres.resolve(configured)
    throwaway = resolution.throwaway
    assert throwaway is not None, resolution.why
    try:
        assert resolution.url == throwaway.url != configured
        assert "does not answer" in resolution.why and throwaway.url in resolution.why
        assert throwaway.pid is not None and not postgres.process_gone(throwaway.pid)
        with psycopg.connect(f"{resolution.url}/postgres", connect_timeout=5) as conn:
            row = conn.execute("SELECT current_setting('fsync'), inet_server_port()").fetchone()
        assert row == ("off", throwaway.port)
    finally:
        throwaway.stop()
    assert postgres.process_gone(throwaway.pid)
    assert not throwaway.dir.exists()
    assert postgres.probe(throwaway.url) is not None  # nothing answers there any more
    throwaway.stop()  # stopping twice is harmless


def test_uses_the_configured_server_when_it_answers() -> None:
    server = postgres.session().url
    if server is None or postgres.session_throwaway() is not None:
        pytest.skip("the configured server does not answer in this run")
    resolution = postgres.resolve(server)
    assert (resolution.url, resolution.throwaway) == (server, None)


def test_no_test_folder_shares_a_name_with_a_subpackage() -> None:
    """tests/ is on sys.path (pytest's pythonpath), so tests/governance is a namespace portion of
    ``governance`` under the editable install: a folder tests/governance/web would stand in for
    the real governance.web, and ``governance.web.listener`` would not be found."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    roots = {"gateway": repo, "governance": repo, "runtimes": repo, "loadtests": repo}
    clashes = [
        str(folder.relative_to(repo))
        for name, root in roots.items()
        for folder in (repo / "tests" / name).glob("**/")
        if folder != repo / "tests" / name
        and (root / name / folder.relative_to(repo / "tests" / name)).is_dir()
        and "__pycache__" not in folder.parts
    ]
    assert clashes == [], f"rename these test folders: {clashes}"

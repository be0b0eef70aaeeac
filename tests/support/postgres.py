"""The PostgreSQL server the tests use, resolved once per test session, and a database of each
test's own on it.

The server named by ``SCOREGATE_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432``,
trust auth, no database in the URL) is used when it answers. Otherwise a throwaway server is
started for the run with the machine's ``initdb``/``pg_ctl`` (found on ``PATH``, in
``/usr/lib/postgresql/*/bin``, ``/usr/local/pgsql/bin``, Homebrew's prefixes, or the directory named
by ``SCOREGATE_TEST_PG_BIN``): a cluster in a temporary directory, trust auth, fsync off,
listening on 127.0.0.1 on a free port, its unix socket inside that directory; it is stopped and
removed when the session ends. With neither, the PostgreSQL tests are skipped, saying why.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SETTING = "SCOREGATE_TEST_POSTGRES"
BIN_SETTING = "SCOREGATE_TEST_PG_BIN"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"

# initdb refuses to run as root; as root the throwaway cluster is made and run as this user.
SERVICE_USER = "postgres"

# Where PostgreSQL's server binaries live when they are not on PATH (newest version first).
BIN_GLOBS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
    "/usr/local/pgsql/bin",  # built from source
    "/opt/homebrew/opt/postgresql*/bin",  # Homebrew, Apple silicon
    "/usr/local/opt/postgresql*/bin",  # Homebrew, Intel
    "/Applications/Postgres.app/Contents/Versions/*/bin",
)


def configured_server() -> str:
    """The server URL (no database) the setting names, or the default."""
    return os.environ.get(SETTING, DEFAULT_SERVER).rstrip("/")


def probe(server: str, timeout: int = 2) -> str | None:
    """None when ``server`` accepts a connection to its ``postgres`` database and runs a query;
    otherwise the one-line reason it does not."""
    import psycopg

    try:
        with psycopg.connect(f"{server}/postgres", connect_timeout=timeout) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return " ".join(str(e).split()) or type(e).__name__
    return None


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def find_binaries() -> Path | None:
    """A directory with both ``initdb`` and ``pg_ctl``: the setting's, PATH's, or a usual place."""
    candidates: list[str] = []
    if os.environ.get(BIN_SETTING):
        candidates.append(os.environ[BIN_SETTING])
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for pattern in BIN_GLOBS:
        candidates.extend(sorted(glob.glob(pattern), key=_version_key, reverse=True))
    for candidate in candidates:
        bin_dir = Path(candidate)
        if all(os.access(bin_dir / tool, os.X_OK) for tool in ("initdb", "pg_ctl")):
            return bin_dir
    return None


def process_gone(pid: int) -> bool:
    """True when no process ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user (the throwaway server run as postgres)
        pass
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_as_user() -> str | None:
    """The user to run initdb and the server as: None (ourselves) unless we are root, which
    initdb refuses; then the service user, through runuser. Raises when that is not possible."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root, which initdb refuses, and there is no {SERVICE_USER!r} user to run "
            "the throwaway server as"
        ) from None
    if shutil.which("runuser") is None:
        raise RuntimeError(
            f"running as root, which initdb refuses, and runuser (to run it as {SERVICE_USER!r}) "
            "is not found"
        )
    return SERVICE_USER


class ThrowawayServer:
    """A PostgreSQL cluster of the test run's own in a temporary directory (see the module doc)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.run_as = run_as_user()
        self.dir = Path(tempfile.mkdtemp(prefix="scoregate-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self.pid: int | None = None
        self.started_in = 0.0
        self._running = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        command = [str(self.bin_dir / tool), *args]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        # The server's own settings come from the arguments, not from the caller's PG* variables.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        done = subprocess.run(
            command, cwd=self.dir, env=env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
                + (f"\nserver log:\n{log}" if log else "")
            )

    def start(self) -> ThrowawayServer:
        """Initialises the cluster and starts it; returns once it accepts connections."""
        began = time.monotonic()
        try:
            if self.run_as is not None:
                shutil.chown(self.dir, user=self.run_as)
            self._run(
                "initdb",
                *("-D", str(self.data), "-U", "postgres", "--auth=trust"),
                *("--encoding=UTF8", "--no-locale", "--no-sync"),
            )
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(
                    "\n# scoregate tests: a throwaway server\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.dir}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\n"
                )
            for attempt in range(3):  # the free port may be taken between choosing and binding
                self.port = _free_port()
                try:
                    self._run(
                        "pg_ctl",
                        *("-D", str(self.data), "-l", str(self.log), "-o", f"-p {self.port}"),
                        *("-w", "-t", "60", "start"),
                    )
                    break
                except RuntimeError:
                    if attempt == 2 or "already in use" not in self.log.read_text(errors="replace"):
                        raise
            self._running = True
            self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stops the server at once (its data is thrown away) and removes the directory."""
        if self._running:
            self._running = False
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(
                    "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60
                )
            # pg_ctl returns once the pid file is gone; the postmaster may still be exiting.
            deadline = time.monotonic() + 10
            while self.pid is not None and not process_gone(self.pid):
                if time.monotonic() > deadline:
                    with contextlib.suppress(OSError):
                        os.kill(self.pid, signal.SIGKILL)
                    break
                time.sleep(0.02)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Resolution:
    """Which server the tests use: ``url`` (None: there is none, and ``why`` says why not)."""

    url: str | None
    why: str
    throwaway: ThrowawayServer | None = None


def resolve(server: str | None = None) -> Resolution:
    """The configured server when it answers, else a freshly started throwaway server, else none.
    The caller stops ``throwaway`` when it is done (``session()`` does, at exit)."""
    server = server or configured_server()
    return _resolve(server, probe(server))


def _not_answering(server: str, refused: str) -> str:
    return f"{server} ({SETTING}) does not answer ({refused})"


def _no_binaries(server: str, refused: str) -> str:
    return (
        f"{_not_answering(server, refused)}, and no initdb/pg_ctl was found for a throwaway "
        f"server (PATH, {', '.join(BIN_GLOBS)} or {BIN_SETTING}); set {SETTING} to a server URL "
        "to run the PostgreSQL tests"
    )


def _resolve(server: str, refused: str | None) -> Resolution:
    if refused is None:
        return Resolution(server, f"{server} ({SETTING}) answers; using it")
    bin_dir = find_binaries()
    if bin_dir is None:
        return Resolution(None, _no_binaries(server, refused))
    try:
        throwaway = ThrowawayServer(bin_dir).start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return Resolution(
            None,
            f"{_not_answering(server, refused)}, and a throwaway server from {bin_dir} could not "
            f"be started: {e}; set {SETTING} to a server URL to run the PostgreSQL tests",
        )
    as_user = f" as user {throwaway.run_as} (this is root)" if throwaway.run_as else ""
    return Resolution(
        throwaway.url,
        f"{_not_answering(server, refused)}; using a throwaway server at {throwaway.url} "
        f"from {bin_dir}{as_user}, started in {throwaway.started_in:.1f} s",
        throwaway,
    )


# This session's resolution: the configured server is probed once, and the throwaway server
# started only when a test first asks for a database.
_probed: dict[str, str | None] = {}
_session: Resolution | None = None


def _probe_configured() -> tuple[str, str | None]:
    server = configured_server()
    if server not in _probed:
        _probed[server] = probe(server)
    return server, _probed[server]


def plan() -> str:
    """One line for the report header: the server this session uses, without starting one."""
    if _session is not None:
        return _session.why
    server, refused = _probe_configured()
    if refused is None:
        return f"{server} ({SETTING}) answers; using it"
    bin_dir = find_binaries()
    if bin_dir is None:
        return _no_binaries(server, refused)
    try:
        user = run_as_user()
    except RuntimeError as e:
        return (
            f"{_not_answering(server, refused)}, and no throwaway server can be started: {e}; "
            f"the PostgreSQL tests are skipped (set {SETTING} to a server URL to run them)"
        )
    as_user = f" as user {user} (this is root)" if user else ""
    return (
        f"{_not_answering(server, refused)}; a throwaway server from {bin_dir}{as_user} is "
        "started when a test first needs one, and removed at exit"
    )


def session() -> Resolution:
    """This test session's server, resolved on first use."""
    global _session
    if _session is None:
        _session = _resolve(*_probe_configured())
        if _session.throwaway is not None:
            atexit.register(_session.throwaway.stop)
    return _session


def session_throwaway() -> ThrowawayServer | None:
    """The throwaway server this session started, if it started one."""
    return _session.throwaway if _session is not None else None


def stop_session() -> None:
    """Stops this session's throwaway server, if one was started (idempotent)."""
    if _session is not None and _session.throwaway is not None:
        _session.throwaway.stop()


def server_url() -> str:
    """This session's server URL (no database); skips the calling test when there is none."""
    resolution = session()
    if resolution.url is None:
        import pytest

        pytest.skip(f"no PostgreSQL server: {resolution.why}")
    return resolution.url


@contextlib.contextmanager
def postgres_database(prefix: str = "scoregate_test") -> Iterator[str]:
    """A new, uniquely named database on this session's server for one test or module, as a URL
    to hand to processes the test starts; dropped afterwards."""
    import psycopg

    server = server_url()
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

"""A throwaway PostgreSQL server on 127.0.0.1 for the storage tests (real server, no mock).

``PgServer`` runs ``initdb`` into a temporary folder, starts ``postgres`` on a free port with
fsync off (a test database need not survive a power cut of the machine, and fsync would make the
tests slow) but synchronous commits, so a crash of the server itself (``restart``) loses nothing
that was committed, as on a production server. It creates one database per test, and can stop,
start and restart the server on the same port, which the fault tests use to cut every worker's
connection.

The binaries are found on PATH or under ``/usr/lib/postgresql/*/bin`` (Debian's layout, which
``scripts/install-postgres.sh`` installs). PostgreSQL refuses to run as root, so under root the
server runs as the ``postgres`` user (or ``nobody``) through ``runuser``/``su``, in a folder
chowned to that user. ``pg_server_or_skip()`` skips the calling test with the reason when no
binaries exist or the server cannot start.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

BINARIES = ("initdb", "pg_ctl", "postgres")


def find_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: PATH first, then the newest Debian one."""
    on_path = [shutil.which(b) for b in BINARIES]
    if all(on_path):
        return Path(on_path[0]).parent  # type: ignore[arg-type]
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda d: [int(x) for x in Path(d).parent.name.split(".") if x.isdigit()],
    )
    for d in reversed(candidates):
        if all(os.access(Path(d) / b, os.X_OK) for b in BINARIES):
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> str | None:
    """The unprivileged user to run the server as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


class PgServer:
    """One PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only."""

    def __init__(self, bindir: Path, base: Path | None = None) -> None:
        self.bindir = bindir
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="centaur-pg-", dir=base))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._dbs = 0
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            os.chmod(self.root, 0o700)

    # -- running the binaries ------------------------------------------------------------------
    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user is None:
            return cmd
        if shutil.which("runuser"):
            return ["runuser", "-u", self.user, "--", *cmd]
        return ["su", self.user, "-s", "/bin/sh", "-c", " ".join(map(_quote, cmd))]

    def _run(self, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if proc.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()}\n{tail}"
            )

    def init(self) -> PgServer:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            timeout=120,
        )
        return self

    def start(self) -> None:
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
            "-c fsync=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=32MB"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects clients cleanly; ``immediate`` is a crash (recovery on start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "immediate", down_for: float = 0.0) -> None:
        """Stop (a crash by default), stay down ``down_for`` seconds, start on the same port."""
        self.stop(mode)
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- databases -----------------------------------------------------------------------------
    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """Create an empty database and return its SQLAlchemy URL (one per test: no leftovers)."""
        import psycopg

        self._dbs += 1
        name = f"{prefix}{self._dbs}_{os.getpid()}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def pg_server_or_skip() -> PgServer:
    """A started server, or ``pytest.skip`` saying what is missing (binaries, driver)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip(
            "psycopg (the PostgreSQL driver) is not installed: pip install 'psycopg[binary]'"
        )
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH or under "
            "/usr/lib/postgresql/*/bin; run scripts/install-postgres.sh"
        )
    server = PgServer(bindir)
    try:
        server.init()
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        server.close()
        pytest.skip(f"could not start a PostgreSQL server: {e}")
    return server

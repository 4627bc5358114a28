"""Run an untrusted trial process (LLM-written code) so that it can only do its job.

The code-editing agent runs a training script that an LLM just wrote. That script must not be
able to read the user's secrets, change how it is measured, damage the study or reach the
network. This module turns a command into a sandboxed command and a scrubbed environment:

* **environment** - only an allow-list of variables passes (locale, paths, thread counts, the
  harness's own ``CENTAUR_*`` settings, CUDA device selection); any name that looks like a
  credential (``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSW*``, ``*CREDENTIAL*``, ``*AUTH*``,
  ``*COOKIE*``, ``*SESSION*``) and any value shaped like an API key is dropped even when
  allow-listed. ``HOME`` points into the trial folder. Always available.
* **file system** - the whole file system is mounted read-only; only the folders named
  ``writable`` (the trial folder) accept writes; ``hidden`` paths (the study storage, the run
  folder with the other trials and the git history, the trusted evaluator, the user's
  credential files under ``$HOME``, ``/run``) are replaced by empty ones. Needs bubblewrap.
* **processes** - a new PID namespace with its own ``/proc``: the trial cannot see the harness
  (whose ``/proc/PID/environ`` holds the real environment) or signal it. Needs bubblewrap, or
  ``unshare`` as a weaker fallback.
* **network** - a new, empty network namespace (only a loopback of its own): no route to the
  internet, to the LLM server or to a PostgreSQL storage on the host's 127.0.0.1. Unix
  sockets are files, not network: ``/run`` is hidden and each socket found in ``/tmp`` and
  ``/var/tmp`` (a bounded scan, :func:`unix_sockets`) is covered. Needs bubblewrap (the
  sockets) or ``unshare`` (the namespace).

Backends, best first: ``bwrap`` (bubblewrap; works as root and, where the kernel allows user
namespaces, as a normal user), ``unshare`` (util-linux; network and PID isolation only) and
``none``. :func:`probe` runs each once to see what really works on this machine. In ``strict``
mode a missing protection is an error naming it (fail closed); in ``best_effort`` mode it is a
warning, and the trial records which protections it ran without.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

Mode = Literal["strict", "best_effort", "off"]
PROTECTIONS = ("env", "filesystem", "processes", "network")

#: Variables a trial may see (exact names); ``LC_*`` and ``CENTAUR_*`` pass by prefix.
ENV_ALLOW = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "PYTHONUNBUFFERED",
        "PYTHONHASHSEED",
        "PYTHONPATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONIOENCODING",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "LD_LIBRARY_PATH",
        "CUDA_VISIBLE_DEVICES",
        "CUDA_DEVICE_ORDER",
        "NVIDIA_VISIBLE_DEVICES",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    }
)
ENV_ALLOW_PREFIXES = ("LC_", "CENTAUR_")
#: Names that are never passed, allow-listed or not.
SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|CERT", re.IGNORECASE
)
#: Values that look like credentials (API keys, bearer tokens, URLs with a password).
SECRET_VALUE = re.compile(
    r"sk-[A-Za-z0-9_\-]{12,}|AIza[0-9A-Za-z_\-]{20,}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|xox[abp]-[A-Za-z0-9\-]{10,}|[Bb]earer\s+\S{12,}|://[^/\s:@]+:[^/\s@]+@"
)
#: Credential files under $HOME that a trial never needs to read.
HOME_CREDENTIALS = (
    ".ssh",
    ".aws",
    ".azure",
    ".gnupg",
    ".docker",
    ".kube",
    ".netrc",
    ".pgpass",
    ".pypirc",
    ".npmrc",
    ".git-credentials",
    ".huggingface",
    ".cache/huggingface",
    ".config/gcloud",
    ".config/gh",
    ".config/openai",
    ".config/anthropic",
    ".config/centaur-hpo",
)


class SandboxUnavailable(RuntimeError):
    """A protection the sandbox was asked to enforce cannot be enforced on this machine."""


def scrub_env(
    env: Mapping[str, str], extra_allow: Iterable[str] = ()
) -> tuple[dict[str, str], list[str]]:
    """(the environment a trial gets, the names that were dropped).

    Only names on the allow-list (plus ``extra_allow``) pass, and never a secret-looking name
    or value. The dropped *names* are returned for the record; values are never returned.
    """
    allow = ENV_ALLOW | set(extra_allow)
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in env.items():
        allowed = name in allow or name.startswith(ENV_ALLOW_PREFIXES)
        if allowed and not SECRET_NAME.search(name) and not SECRET_VALUE.search(value):
            kept[name] = value
        else:
            dropped.append(name)
    return kept, sorted(dropped)


@dataclass(frozen=True)
class Capabilities:
    """What this machine can enforce, found by running each backend once."""

    bwrap: str | None  # path of a working bwrap, else None
    unshare: str | None  # path of a working unshare (network + PID), else None
    notes: tuple[str, ...] = ()

    def backend(self) -> str:
        return "bwrap" if self.bwrap else ("unshare" if self.unshare else "none")

    def available(self) -> set[str]:
        if self.bwrap:
            return set(PROTECTIONS)
        if self.unshare:
            return {"env", "processes", "network"}
        return {"env"}


def _works(cmd: Sequence[str]) -> str | None:
    """None if ``cmd`` exits 0 within 20 s, else a one-line reason."""
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{cmd[0]}: {e}"
    if r.returncode == 0:
        return None
    err = r.stderr.decode(errors="replace").strip().splitlines()
    return f"{Path(cmd[0]).name} exited {r.returncode}: {err[-1] if err else ''}"


@lru_cache(maxsize=4)
def probe(bwrap: str | None = None, unshare: str | None = None) -> Capabilities:
    """Find out which backends work here (cached per process).

    Both need namespaces: as root they work in most containers; as a normal user they need
    unprivileged user namespaces (``kernel.unprivileged_userns_clone=1`` on Debian, no AppArmor
    restriction on Ubuntu 24.04+). The reason each one failed goes into ``notes``.
    """
    notes: list[str] = []
    bw = bwrap or shutil.which("bwrap")
    if bw:
        why = _works(
            [
                bw,
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
                "--proc",
                "/proc",
                "--unshare-net",
                "--unshare-pid",
                "--die-with-parent",
                "true",
            ]
        )
        if why:
            notes.append(f"bubblewrap found but not usable: {why}")
            bw = None
    else:
        notes.append(
            "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
        )
    us = unshare or shutil.which("unshare")
    if us:
        why = _works(_unshare_prefix(us) + ["true"])
        if why:
            notes.append(f"unshare found but not usable: {why}")
            us = None
    return Capabilities(bw, us, tuple(notes))


def _unshare_prefix(unshare: str) -> list[str]:
    root = os.geteuid() == 0
    return [
        unshare,
        *([] if root else ["--map-root-user"]),
        "--net",
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "--",
    ]


def unix_sockets(
    roots: Sequence[str] = ("/tmp", "/var/tmp"), max_depth: int = 3, max_entries: int = 5000
) -> list[Path]:
    """Path-bound Unix sockets under ``roots`` (``/run`` is hidden whole), a bounded scan.

    Sockets deeper than ``max_depth`` or past ``max_entries`` are not found: keep server
    sockets (PostgreSQL's ``-k DIR``) in ``/run`` or near the top of ``/tmp``.
    """
    found: list[Path] = []
    seen = 0
    stack = [(Path(r), 0) for r in roots]
    while stack and seen < max_entries:
        folder, depth = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            seen += 1
            try:
                mode = e.stat(follow_symlinks=False).st_mode
            except OSError:
                continue
            if stat.S_ISSOCK(mode):
                found.append(Path(e.path))
            elif stat.S_ISDIR(mode) and depth < max_depth:
                stack.append((Path(e.path), depth + 1))
    return found


def _exists(p: Path) -> bool:
    return p.exists() or p.is_symlink()


@dataclass
class Sandbox:
    """How to run an untrusted trial; one object serves every trial of a study.

    ``hidden`` paths are invisible (empty) inside, ``readonly`` ones are shown read-only even
    when they lie inside a hidden folder; each call to :meth:`wrap` names the folders that may be
    written. ``mode``: ``strict`` fails closed when a protection is missing, ``best_effort``
    warns and records, ``off`` runs the command as is (only the environment is scrubbed).
    """

    mode: Mode = "strict"
    hidden: list[Path] = field(default_factory=list)
    readonly: list[Path] = field(default_factory=list)
    env_allow: tuple[str, ...] = ()
    network: bool = False
    capabilities: Capabilities | None = None
    _warned: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("strict", "best_effort", "off"):
            raise ValueError(f"sandbox mode {self.mode!r}: use strict, best_effort or off")
        self.hidden = [Path(p).absolute() for p in self.hidden]
        self.readonly = [Path(p).absolute() for p in self.readonly]

    # -- what is enforced ----------------------------------------------------------------------
    def caps(self) -> Capabilities:
        if self.capabilities is None:
            self.capabilities = probe()
        return self.capabilities

    def missing(self) -> list[str]:
        """Protections this sandbox should enforce but cannot, on this machine."""
        if self.mode == "off":
            return [p for p in PROTECTIONS if p != "env"]
        wanted = set(PROTECTIONS) - ({"network"} if self.network else set())
        return sorted(wanted - self.caps().available())

    def check(self) -> None:
        """Raise :class:`SandboxUnavailable` (strict) or warn once (best_effort) if incomplete."""
        missing = self.missing()
        if not missing or self.mode == "off":
            return
        notes = "; ".join(self.caps().notes)
        text = (
            f"the trial sandbox cannot enforce: {', '.join(missing)} ({notes}). "
            "Install bubblewrap (scripts/install-sandbox.sh or apt-get install bubblewrap), "
            "or accept a weaker sandbox with --option sandbox=best_effort"
        )
        if self.mode == "strict":
            raise SandboxUnavailable(text)
        if not self._warned:
            warnings.warn(text, RuntimeWarning, stacklevel=2)
            self._warned = True

    def describe(self) -> dict[str, Any]:
        """What a trial ran under, for the study's records (names only, never values)."""
        return {
            "mode": self.mode,
            "backend": "none" if self.mode == "off" else self.caps().backend(),
            "missing": self.missing(),
            "network": self.network,
            "hidden": [str(p) for p in self.hidden],
        }

    # -- the command ---------------------------------------------------------------------------
    def wrap(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        writable: Sequence[Path] = (),
        readonly: Sequence[Path] = (),
    ) -> tuple[list[str], dict[str, str], dict[str, Any]]:
        """(command to run, its environment, a record of what was enforced).

        ``cwd`` is always writable; ``writable`` adds folders; ``readonly`` shows extra paths
        read-only on top of the hidden ones (e.g. the trained work folder to an evaluator).
        """
        self.check()
        cwd = Path(cwd).absolute()
        tmp = cwd / ".tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        clean, dropped = scrub_env(env, self.env_allow)
        clean.update(HOME=str(cwd), TMPDIR=str(tmp), TMP=str(tmp), TEMP=str(tmp))
        record = {**self.describe(), "env_dropped": dropped}
        backend = record["backend"]
        if backend == "bwrap":
            cmd = self._bwrap(
                command, cwd, [cwd, *map(Path, writable)], [*self.readonly, *readonly]
            )
        elif backend == "unshare":
            caps = self.caps()
            assert caps.unshare is not None
            cmd = _unshare_prefix(caps.unshare) + list(command)
            if self.network:
                cmd.remove("--net")
        else:
            cmd = list(command)
        return cmd, clean, record

    def _bwrap(
        self,
        command: Sequence[str],
        cwd: Path,
        writable: Sequence[Path],
        readonly: Sequence[Path],
    ) -> list[str]:
        caps = self.caps()
        assert caps.bwrap is not None
        args = [caps.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        args += ["--tmpfs", "/dev/shm", "--tmpfs", "/run"]
        for dev in sorted(Path("/dev").glob("nvidia*")) + [Path("/dev/dri")]:
            if dev.exists():  # GPUs stay usable inside
                args += ["--dev-bind", str(dev), str(dev)]
        home = Path(os.path.expanduser("~"))
        hidden = list(self.hidden) + [home / c for c in HOME_CREDENTIALS]
        shown = [Path(p) for p in (*readonly, *writable)]
        hidden_dirs = [h for h in hidden if h.is_dir()]
        for path in hidden:
            if not _exists(path) or any(d != path and path.is_relative_to(d) for d in hidden_dirs):
                continue  # gone, or already hidden with a folder above it
            if path.resolve().is_dir():
                # An empty, read-only folder: writes there fail loudly instead of vanishing.
                # Mount points for the folders shown inside it are made before it turns
                # read-only (bwrap cannot create them afterwards).
                args += ["--tmpfs", str(path)]
                for inner in shown:
                    if inner != path and inner.is_relative_to(path) and inner.is_dir():
                        args += ["--dir", str(inner)]
                args += ["--remount-ro", str(path)]
            else:
                args += ["--ro-bind", "/dev/null", str(path)]
        for sock in unix_sockets():
            # A read-only mount does not stop connect() on a socket (a database or docker
            # socket in /tmp would be reachable): cover each one with /dev/null.
            if not any(sock.is_relative_to(d) for d in hidden_dirs):
                args += ["--ro-bind", "/dev/null", str(sock)]
        for path in readonly:
            if _exists(path):
                args += ["--ro-bind", str(path), str(path)]
        for path in writable:
            path.mkdir(parents=True, exist_ok=True)
            args += ["--bind", str(path), str(path)]
        if not self.network:
            args.append("--unshare-net")
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"]
        args += ["--chdir", str(cwd), "--"]
        return args + list(command)


def sandbox_for_study(
    mode: Mode,
    *,
    run_dir: Path,
    storage_url: str | None = None,
    hidden: Iterable[str | Path] = (),
    env_allow: Iterable[str] = (),
) -> Sandbox:
    """The sandbox of one study: hides its run folder (storage, git history, other trials), a
    SQLite storage file wherever it lives (with its journal files) and ``hidden``."""
    paths = [Path(run_dir).absolute(), *map(Path, hidden)]
    if storage_url and storage_url.startswith("sqlite:///"):
        db = Path(storage_url[len("sqlite:///") :].split("?", 1)[0]).absolute()
        paths += [db] + [db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal")]
    return Sandbox(mode=mode, hidden=paths, env_allow=tuple(env_allow))


def main(argv: list[str] | None = None) -> int:
    """``python -m centaur_hpo.sandbox``: print what this machine can enforce."""
    caps = probe()
    print(f"sandbox backend: {caps.backend()}")
    for p in PROTECTIONS:
        print(f"  {p:<11} {'yes' if p in caps.available() else 'NO'}")
    for n in caps.notes:
        print(f"  note: {n}")
    return 0 if caps.bwrap else 1


if __name__ == "__main__":
    sys.exit(main())

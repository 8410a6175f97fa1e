"""Run an untrusted conversion so it can harm nothing: bubblewrap gives it its own
network namespace (no network at all), its own PID namespace (killing it kills all of
it), and a file system holding only the system's programs and its own work folder,
so a document's links cannot fetch URLs or embed files such as ``/etc/passwd``.
Around it: a wall-clock limit that kills the whole process group, a memory limit
(``RLIMIT_AS``) and a limit on the size of any file it writes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Where the work folder appears inside the sandbox.
INSIDE = "/work"
_MAX_OUTPUT_FILE_BYTES = 256 * 1024 * 1024
#: LibreOffice's scratch space (in memory): a zip bomb it inflates there stops here.
_TMP_BYTES = 256 * 1024 * 1024
_KEPT_LOG_CHARS = 2000


class SandboxUnavailable(RuntimeError):
    """The machine cannot build the sandbox: conversions are refused, not run unguarded."""


class ConversionTimedOut(Exception):
    pass


@dataclass(frozen=True)
class Finished:
    returncode: int
    log: str


def _read_only_system() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("lib", "lib64", "bin", "sbin"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), f"/{name}"]
        elif path.is_dir():
            args += ["--ro-bind", str(path), f"/{name}"]
    # Only what LibreOffice and fonts need from /etc: no passwd, no hosts, no keys.
    for etc in ("/etc/fonts", "/etc/libreoffice", "/etc/alternatives", "/etc/ld.so.cache"):
        if os.path.exists(etc):
            args += ["--ro-bind", etc, etc]
    return args


class Sandbox:
    """``kind`` is ``bwrap`` (the default) or ``none`` (an operator's explicit choice for a
    machine without user namespaces: documents then see the network and the disk)."""

    def __init__(self, kind: str = "bwrap") -> None:
        self.kind = kind
        self._checked = kind == "none"

    def check(self) -> None:
        """Fail early and clearly where bubblewrap is missing or namespaces are refused."""
        if self._checked:
            return
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed: apt-get install bubblewrap, or set "
                "CONVERT_SANDBOX=none to convert documents without a sandbox (unsafe)"
            )
        probe = subprocess.run(
            [bwrap, "--unshare-all", *_read_only_system(), "--", "/usr/bin/true"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if probe.returncode != 0:
            raise SandboxUnavailable(
                f"bubblewrap cannot make a sandbox here ({probe.stderr.strip()[:200]}); "
                "set CONVERT_SANDBOX=none to convert without one (unsafe)"
            )
        self._checked = True

    def argv(self, workdir: Path, command: list[str]) -> list[str]:
        if self.kind == "none":
            return command
        return [
            "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
            *_read_only_system(),
            "--proc", "/proc", "--dev", "/dev", "--size", str(_TMP_BYTES), "--tmpfs", "/tmp",
            "--bind", str(workdir), INSIDE, "--chdir", INSIDE,
            "--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "LANG", "C.UTF-8",
            "--", *command,
        ]  # fmt: skip

    def run(self, workdir: Path, command: list[str], *, timeout_s: float,
            memory_bytes: int) -> Finished:  # fmt: skip
        """Run ``command`` (paths inside the sandbox start with ``/work``); the whole
        process group is killed at ``timeout_s``."""
        self.check()
        if self.kind == "none":
            command = [part.replace(INSIDE, str(workdir), 1) for part in command]

        # prlimit, not preexec_fn: a worker has threads, and forking them into Python
        # code before exec is not safe.
        limits = [f"--as={memory_bytes}", f"--fsize={_MAX_OUTPUT_FILE_BYTES}", "--core=0"]
        proc = subprocess.Popen(
            ["prlimit", *limits, "--", *self.argv(workdir, command)], cwd=workdir,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ConversionTimedOut(
                f"the conversion took longer than {timeout_s:g} s and was stopped"
            ) from None
        finally:
            if proc.poll() is None:
                _kill_group(proc)
        log = out.decode("utf-8", "replace")[-_KEPT_LOG_CHARS:]
        return Finished(returncode=proc.returncode, log=log)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()

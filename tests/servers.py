"""Real database servers for the tests, started on free ports in temporary folders.

Nothing here depends on a server already running on the machine (nor on its
default ports). PostgreSQL refuses to run as root, so as root the cluster runs
as the ``postgres`` user. Redis runs as whoever runs the tests.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin_dir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class PostgresServer:
    """A throwaway cluster: ``start()``, ``url(db)``, ``restart()``, ``stop()``."""

    def __init__(self) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL binaries not found; ./run test installs them")
        self.bin_dir = bin_dir
        self.root = tempfile.mkdtemp(prefix="offload-pg-")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "server.log")
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        os.chmod(self.root, 0o755)
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [os.path.join(self.bin_dir, command[0]), *command[1:]]
        if self._as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, check=check, capture_output=True, text=True, cwd=self.root)

    def start(self) -> PostgresServer:
        if not os.path.exists(self.data):
            self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--no-sync")  # fmt: skip
        self._run(
            "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start", "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=300 -c shared_buffers=64MB",
        )  # fmt: skip
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.data, "-w", "-m", mode, "stop", check=False)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
            "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql,
        ).stdout  # fmt: skip

    def create_database(self, template: str = "template1") -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def destroy(self) -> None:
        self.stop("immediate")
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)


class RedisServer:
    """A throwaway ``redis-server``: ``start()``, ``url()``, ``stop()``, ``kill()``, ``start()``.

    It listens on 127.0.0.1 on a free port and keeps its files (log, AOF) in its
    own temporary folder; starting it again after ``stop()`` or ``kill()`` reuses
    that port and folder, so a restart finds what the server had persisted.
    ``args`` are appended to the defaults and win over them, e.g.
    ``RedisServer("--appendonly", "yes", "--appendfsync", "always")`` or
    ``RedisServer("--maxmemory-policy", "allkeys-lru")``.
    """

    #: No RDB snapshots (their forks only slow a shared test machine), no eviction.
    DEFAULTS = ("--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction")

    def __init__(self, *args: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found on PATH; ./run test installs it "
                "(or: apt-get install redis-server)"
            )
        self.binary = binary
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="offload-redis-"))
        self.log = self.root / "server.log"
        self.port = free_port()
        #: It listens on this Unix socket too (unix:// URLs).
        self.socket_path = self.root / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> RedisServer:
        """Start (or start again) and return once the server answers PING with PONG."""
        if self.running:
            return self
        argv = [
            self.binary,
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root),
            "--logfile", str(self.log), "--daemonize", "no",
            "--unixsocket", str(self.socket_path), "--unixsocketperm", "700",
            *self.DEFAULTS, *self.args,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            argv, cwd=self.root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while not self.ping():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode}: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING: {self.log_tail()}")
            time.sleep(0.02)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ping(self) -> bool:
        """True once the server answers PONG (not while it is still loading its AOF)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def url(self, db: int = 0, prefix: str | None = None) -> str:
        url = f"redis://127.0.0.1:{self.port}/{db}"
        return f"{url}?prefix={prefix}" if prefix is not None else url

    def stop(self, timeout_s: float = 60) -> None:
        """SIGTERM: Redis flushes its AOF and exits cleanly."""
        self._signal(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL: what a crash or a pulled plug looks like to the clients."""
        self._signal(signal.SIGKILL, 60)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop (SIGTERM, the AOF flushed), stay down ``down_s``, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def _signal(self, signum: signal.Signals, timeout_s: float) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def aof_files(self) -> list[Path]:
        """The append-only files on disk (Redis 7 keeps them in ``appendonlydir``)."""
        return sorted(p for p in self.root.rglob("*.aof*") if p.is_file())

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def destroy(self) -> None:
        self.kill()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)

"""``python -m apps.convert``: the whole service on one machine: the pages (with a
development outbox that catches the e-mails), and workers in child processes. Stop it
with Ctrl-C. With ``OFFLOAD_URL`` set to PostgreSQL or Redis, run more workers on other
machines with ``offload worker apps.convert.tasks:build_app`` (sharing CONVERT_DATA_DIR).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from apps.convert.settings import from_env


class Supervisor(threading.Thread):
    """Keeps ``count`` worker processes running: one that dies (killed, out of memory) is
    started again, after a pause that grows while they keep dying, and said so."""

    def __init__(self, command: list[str], count: int) -> None:
        super().__init__(daemon=True, name="convert-workers")
        self.command, self.count = command, count
        self.processes: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        with self._lock:
            self.processes = [subprocess.Popen(self.command) for _ in range(self.count)]
        pause_s = 1.0
        while not self._stopping.wait(1.0):
            with self._lock:
                for index, process in enumerate(self.processes):
                    if process.poll() is None or self._stopping.is_set():
                        continue
                    print(f"  a worker stopped (exit status {process.returncode}); starting "
                          f"another in {pause_s:g} s", file=sys.stderr, flush=True)  # fmt: skip
                    if self._stopping.wait(pause_s):
                        return
                    self.processes[index] = subprocess.Popen(self.command)
                    pause_s = min(pause_s * 2, 60.0)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for process in self.processes:
                process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 35
            for process in self.processes:
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m apps.convert", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--smtp-port", type=int, default=8025,
                        help="the development outbox's SMTP port")  # fmt: skip
    parser.add_argument("--no-outbox", action="store_true",
                        help="send mail with OFFLOAD_SMTP_* instead")  # fmt: skip
    parser.add_argument("--dashboard-port", type=int, default=8001,
                        help="offload's dashboard of every job (0: none)")  # fmt: skip
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    if args.workers < 0:
        sys.exit("--workers is 0 or more")
    ports = ((args.port, "--port"), (args.smtp_port, "--smtp-port"),
             (args.dashboard_port, "--dashboard-port"))  # fmt: skip
    for port, what in ports:
        if (what == "--smtp-port" and args.no_outbox) or not port:
            continue
        if not _port_free(args.host, port):
            sys.exit(f"port {port} on {args.host} is taken: choose another with {what}")
    settings = from_env()
    public_url = os.environ.get("OFFLOAD_PUBLIC_URL") or f"http://{args.host}:{args.port}"
    os.environ["OFFLOAD_PUBLIC_URL"] = public_url
    if not args.no_outbox:
        os.environ.update(OFFLOAD_SMTP_HOST=args.host, OFFLOAD_SMTP_PORT=str(args.smtp_port),
                          OFFLOAD_SMTP_SECURITY="none")  # fmt: skip
    os.environ.setdefault("OFFLOAD_SMTP_FROM", "convert@localhost")
    from apps.convert.tasks import build_service

    service = build_service(settings)
    service.sandbox.check()  # say now, not at the first upload, that it cannot run here
    command = [sys.executable, "-m", "offload", "worker", "apps.convert.tasks:build_app",
               "-q", "convert,default", "-c", str(settings.limits.slots * 2)]  # fmt: skip
    workers = Supervisor(command, args.workers)
    workers.start()
    dashboard = None
    if args.dashboard_port:
        dashboard = Supervisor([sys.executable, "-m", "offload", "serve",
                                "apps.convert.tasks:build_app", "--host", args.host, "--port",
                                str(args.dashboard_port), "--log-level", "warning"], 1)  # fmt: skip
        dashboard.start()
    try:
        return _serve(service, args, public_url)
    finally:
        workers.stop()
        if dashboard is not None:
            dashboard.stop()


def _serve(service: object, args: argparse.Namespace, public_url: str) -> int:
    import uvicorn

    from apps.convert.web import create_app

    outbox = None
    if not args.no_outbox:
        from offload.web.outbox import Outbox

        outbox = Outbox(host=args.host, port=args.smtp_port)
    web = create_app(service, outbox=outbox)  # type: ignore[arg-type]
    store = service.app.display_url  # type: ignore[attr-defined]
    print(f"\n  Convert documents: open {public_url}/", flush=True)
    if outbox is not None:
        print(f"  E-mails arrive in the development outbox: {public_url}/dev/outbox", flush=True)
    if args.dashboard_port:
        print(f"  Every job, live, for operators: http://{args.host}:{args.dashboard_port}/ "
              "(log in as a user made with: .venv/bin/offload user create NAME --owner ops "
              "--role admin --app apps.convert.tasks:build_app)", flush=True)  # fmt: skip
    print(f"  Jobs are stored in {store}; Ctrl-C stops everything.\n", flush=True)
    uvicorn.run(web, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())

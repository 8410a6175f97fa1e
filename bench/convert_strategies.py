"""How fast can LibreOffice turn uploads into PDFs? Three ways to drive it (and a sandbox).

The conversion service (apps/convert) must pick one. On a mix of typical small documents made by
``tests/convert_samples.py`` (Word, Excel, PowerPoint, ODF, RTF, text, Markdown, PNG, JPEG):

``fresh``
    one ``soffice --headless --convert-to pdf`` per file, each with a fresh user profile
    (``-env:UserInstallation``): the simplest, fully isolated way, paying LibreOffice's start
    and a new profile every time.
``fresh-bwrap``
    the same inside bubblewrap (no network, read-only /usr, only the job's folder writable):
    what the sandbox adds to ``fresh``. Its profile is made on the sandbox's tmpfs /tmp, where
    ``fresh`` makes it on disk (in the bench's temp folder).
``batch-N``
    one ``soffice`` per N files (one command line naming them all), fresh profile each: the
    start is shared, but so is the fate of the batch (one bad file can stall the others).
``unoserver``
    a warm LibreOffice kept running by ``unoserver`` (it needs Debian's python3-uno, so it runs
    on /usr/bin/python3), each file one XML-RPC ``convert`` call from this interpreter. One
    server per worker (a LibreOffice converts one document at a time). With LibreOffice 7.4,
    every spreadsheet that unoserver 3.7 loads aborts LibreOffice (SIGABRT in
    vcl::Window::GetCursor): the dead server is restarted before its next file, the restart
    counted in that file's latency, and the spreadsheet is lost (see ``ok``).
``uno-hidden``
    the same warm instance driven by a 50-line UNO script of our own (``UNO_HELPER``, on
    /usr/bin/python3 with python3-uno) that loads documents hidden, which avoids that crash.
    Both warm strategies are skipped, with the reason, when python3-uno (or unoserver) is not
    installed.

Each runs with 1 and 2 workers (``--parallel``), taking files (or batches) from one queue.
A file's latency is that of the call that converted it: the process's run for ``fresh`` and
``batch-N`` (so every file of a batch has the batch's latency), the call for the warm ones;
time waiting in the queue is not counted. ``ok`` counts PDFs that exist and, for the kinds
with text, hold the sample's marker (checked with pypdf after timing). Nothing is asserted
about speed. Servers and profiles are made in a temp folder and removed at the end.

    .venv/bin/python bench/convert_strategies.py              # 24 files, 1 and 2 workers
    .venv/bin/python bench/convert_strategies.py --files 48 --rounds 3
    .venv/bin/python bench/convert_strategies.py --smoke      # 3 files, 2 workers, < 30 s
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import convert_samples  # noqa: E402

SOFFICE = shutil.which("soffice") or "soffice"
CALL_TIMEOUT_S = 300.0
# The sandbox the service uses: nothing shared but the job's folder (as /work), read-only /usr,
# fonts and LibreOffice's configuration; no network (--unshare-all), a private /tmp.
BWRAP = [
    "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
    "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64",
    "/lib64", "--symlink", "usr/bin", "/bin", "--ro-bind", "/etc/fonts", "/etc/fonts",
    "--ro-bind", "/etc/libreoffice", "/etc/libreoffice", "--proc", "/proc", "--dev", "/dev",
    "--tmpfs", "/tmp",
]  # fmt: skip


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Result:
    strategy: str
    parallel: int
    files: int
    total_s: float = 0.0
    ok: int = 0
    latencies: list[float] = field(default_factory=list)
    note: str = ""


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def make_documents(folder: Path, count: int) -> list[Path]:
    """`count` documents cycling through convert_samples' kinds, each with a unique stem."""
    folder.mkdir(parents=True)
    scratch = folder / ".scratch"
    scratch.mkdir()
    kinds = list(convert_samples.MAKERS)
    documents = []
    for i in range(count):
        made = convert_samples.MAKERS[kinds[i % len(kinds)]](scratch)
        documents.append(made.rename(folder / f"{i:03d}-{made.name}"))
    scratch.rmdir()
    return documents


def check_outputs(documents: Sequence[Path], outdir: Path) -> int:
    """How many documents have a PDF in `outdir` that holds their marker (if they have text)."""
    import pypdf

    good = 0
    for document in documents:
        pdf = outdir / f"{document.stem}.pdf"
        kind = document.name.split("-")[1]  # "007-xlsx-sample.xlsx"
        try:
            reader = pypdf.PdfReader(pdf)
            text = "".join(page.extract_text() for page in reader.pages)
        except Exception:
            continue
        if kind not in convert_samples.TEXT_KINDS or convert_samples.marker(kind) in text:
            good += 1
    return good


def run_queue(
    tasks: Sequence[Sequence[Path]], parallel: int, convert: Callable[[int, Sequence[Path]], None]
) -> tuple[float, list[float]]:
    """Run convert(worker, files) over `tasks` on `parallel` workers; wall time and latencies.

    Each worker thread has a fixed index (0..parallel-1), so a strategy can give each worker
    its own server. A task's duration is the latency of each of its files.
    """
    queue = list(reversed(tasks))
    latencies: list[float] = []

    def worker(index: int) -> None:
        while True:
            try:
                files = queue.pop()
            except IndexError:
                return
            started = time.perf_counter()
            try:
                convert(index, files)
            except Exception as exc:
                log(f"  {[f.name for f in files]}: {type(exc).__name__}: {exc}")
            latencies.extend([time.perf_counter() - started] * len(files))

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for future in [pool.submit(worker, i) for i in range(parallel)]:
            future.result()
    return time.perf_counter() - started, latencies


def soffice_command(profile: Path, outdir: Path, files: Sequence[Path]) -> list[str]:
    return [
        SOFFICE,
        f"-env:UserInstallation={profile.as_uri()}",
        "--headless",
        "--convert-to",
        "pdf",
        "--outdir",
        str(outdir),
        *map(str, files),
    ]


def run_soffice(command: list[str]) -> None:
    """Run one soffice command line; a time-out kills its whole process group."""
    with subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as process:
        try:
            process.wait(timeout=CALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise


def strategy_soffice(
    documents: Sequence[Path], work: Path, parallel: int, batch: int, sandbox: bool
) -> Result:
    """`fresh` (batch 1), `batch-N`, and `fresh-bwrap` (batch 1 in the sandbox)."""
    name = ("fresh" if batch == 1 else f"batch-{batch}") + ("-bwrap" if sandbox else "")
    outdir = work / f"{name}-p{parallel}"
    outdir.mkdir()
    counter = iter(range(1_000_000))

    def convert(_worker: int, files: Sequence[Path]) -> None:
        job = outdir / f"job{next(counter)}"
        job.mkdir()
        if not sandbox:
            run_soffice(soffice_command(job / "profile", outdir, files))
            shutil.rmtree(job)
            return
        # The service's way: the upload copied into a job folder, bound as /work.
        for file in files:
            shutil.copyfile(file, job / file.name)
        inner = soffice_command(Path("/tmp/prof"), Path("/work/out"), [])
        inner += [f"/work/{file.name}" for file in files]
        sandboxed = [*BWRAP, "--bind", str(job), "/work", "--setenv", "HOME", "/tmp"]
        run_soffice([*sandboxed, "--chdir", "/work", *inner])
        for pdf in (job / "out").glob("*.pdf"):
            pdf.rename(outdir / pdf.name)
        shutil.rmtree(job)

    tasks = [documents[i : i + batch] for i in range(0, len(documents), batch)]
    total, latencies = run_queue(tasks, parallel, convert)
    note = "one batch: one worker idle" if len(tasks) < parallel else ""
    ok = check_outputs(documents, outdir)
    return Result(name, parallel, len(documents), total, ok, latencies, note)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# A warm converter for /usr/bin/python3 (Debian's python3-uno): starts its own LibreOffice on a
# pipe, then converts one JSON request a line. It loads with Hidden=True, which unoserver 3.7
# does not: LibreOffice 7.4 aborts (SIGABRT in vcl::Window::GetCursor) on every spreadsheet that
# unoserver loads into a visible frame, and Hidden avoids it.
UNO_HELPER = """
import json, subprocess, sys, time, uno
from com.sun.star.beans import PropertyValue
profile, pipe = sys.argv[1], sys.argv[2]
office = subprocess.Popen(
    ["soffice", "-env:UserInstallation=" + profile, "--headless", "--invisible", "--nologo",
     "--norestore", "--nodefault", "--accept=pipe,name=%s;urp;StarOffice.ComponentContext" % pipe],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
local = uno.getComponentContext()
resolver = local.ServiceManager.createInstanceWithContext(
    "com.sun.star.bridge.UnoUrlResolver", local)
deadline = time.time() + 60
while True:
    try:
        remote = resolver.resolve("uno:pipe,name=%s;urp;StarOffice.ComponentContext" % pipe)
        break
    except Exception:
        if time.time() > deadline or office.poll() is not None:
            raise
        time.sleep(0.1)
desktop = remote.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", remote)
FILTERS = [
    ("com.sun.star.sheet.SpreadsheetDocument", "calc_pdf_Export"),
    ("com.sun.star.presentation.PresentationDocument", "impress_pdf_Export"),
    ("com.sun.star.drawing.DrawingDocument", "draw_pdf_Export"),
    ("com.sun.star.text.WebDocument", "writer_web_pdf_Export"),
    ("com.sun.star.text.TextDocument", "writer_pdf_Export"),
]
def prop(name, value):
    return PropertyValue(Name=name, Value=value)
print("ready", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    try:
        document = desktop.loadComponentFromURL(uno.systemPathToFileUrl(request["in"]), "_blank",
                                                0, (prop("ReadOnly", True), prop("Hidden", True)))
        if document is None:
            raise RuntimeError("could not load")
        try:
            name = next(f for service, f in FILTERS if document.supportsService(service))
            target = uno.systemPathToFileUrl(request["out"])
            document.storeToURL(target, (prop("FilterName", name),))
        finally:
            document.close(True)
        reply = {"ok": True}
    except Exception as exc:
        reply = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
    print(json.dumps(reply), flush=True)
with __import__("contextlib").suppress(Exception):
    desktop.terminate()
office.wait(timeout=20)
"""


class WarmOffice:
    """One long-lived LibreOffice behind `unoserver` or UNO_HELPER, restarted if it dies."""

    def __init__(self, kind: str, work: Path) -> None:
        self.kind, self.work = kind, work
        self.process: subprocess.Popen[bytes] | None = None
        self.proxy: xmlrpc.client.ServerProxy | None = None
        self.starts = 0
        self.failed = False
        work.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.stop()
        self.starts += 1
        profile = self.work / f"profile{self.starts}"
        errors = (self.work / f"office{self.starts}.log").open("wb")
        if self.kind == "unoserver":
            port = free_port()
            (self.work / "office.pid").unlink(missing_ok=True)
            command = [
                shutil.which("unoserver") or "unoserver", "--interface", "127.0.0.1",
                "--port", str(port), "--uno-port", str(free_port()),
                "--user-installation", str(profile),
                "--libreoffice-pid-file", str(self.work / "office.pid"),
            ]  # fmt: skip
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True
            )
            self.proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}", allow_none=True)
            deadline = time.perf_counter() + 60
            while True:
                if self.process.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError(f"unoserver did not start (see {errors.name})")
                try:
                    self.proxy.info()
                    if self.alive():  # unoserver writes LibreOffice's pid a little later
                        break
                except (OSError, xmlrpc.client.Error):
                    pass
                time.sleep(0.1)
        else:
            pipe = f"convert-bench-{os.getpid()}-{id(self)}-{self.starts}"
            command = ["/usr/bin/python3", "-c", UNO_HELPER, profile.as_uri(), pipe]
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                start_new_session=True,
            )
            assert self.process.stdout is not None
            if self.process.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"the UNO helper did not start (see {errors.name})")
        errors.close()

    def alive(self) -> bool:
        """Whether the server and its LibreOffice both run (unoserver outlives its office)."""
        if self.process is None or self.process.poll() is not None:
            return False
        if self.proxy is None:
            return True
        try:
            pid = int((self.work / "office.pid").read_text())
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return False
        return state not in ("Z", "X")

    def convert(self, source: Path, target: Path) -> None:
        """Convert one file, first restarting the office if it died or its last call failed.

        A supervisor would recycle an office after a failure; the restart counts in this file's
        latency.
        """
        if self.failed or not self.alive():
            self.start()
        assert self.process is not None
        self.failed = True  # until it returns: a failed call may leave a dying office
        if self.proxy is not None:
            # unoserver 3: convert(inpath, indata, outpath, convert_to, filtername, ...)
            self.proxy.convert(str(source), None, str(target), "pdf", None, [], True)
            self.failed = False
            return
        assert self.process.stdin is not None and self.process.stdout is not None
        request = {"in": str(source), "out": str(target)}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        reply = json.loads(line) if line else {"ok": False, "error": "helper exited"}
        if not reply["ok"]:
            raise RuntimeError(reply["error"])
        self.failed = False

    def stop(self) -> None:
        """End the server and its LibreOffice (both in the process group it was started in)."""
        if self.process is None:
            return
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # the helper closes LibreOffice at end of input
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        # The profile is thrown away, so nothing is lost by SIGKILL; the whole group goes, with
        # any straggler (oosplash outlives a crashed soffice.bin).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None


def strategy_warm(documents: Sequence[Path], work: Path, parallel: int, kind: str) -> Result:
    """Each file one call to a warm LibreOffice; worker i always uses office i."""
    outdir = work / f"{kind}-p{parallel}"
    outdir.mkdir()
    offices = [WarmOffice(kind, work / f"{kind}{i}") for i in range(parallel)]
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(WarmOffice.start, offices))
        log(f"  {parallel} warm office(s) ready in {time.perf_counter() - started:.1f} s")

        def convert(worker: int, files: Sequence[Path]) -> None:
            for file in files:
                offices[worker].convert(file, outdir / f"{file.stem}.pdf")

        total, latencies = run_queue([[d] for d in documents], parallel, convert)
    finally:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(WarmOffice.stop, offices))
    restarts = sum(office.starts - 1 for office in offices)
    note = f"{restarts} restart(s) after a failed call or a dead LibreOffice" if restarts else ""
    ok = check_outputs(documents, outdir)
    return Result(kind, parallel, len(documents), total, ok, latencies, note)


def print_table(results: Sequence[Result]) -> None:
    header = ["strategy", "parallel", "files", "ok", "total s", "conv/min", "p50 s", "p95 s"]
    rows = []
    for r in results:
        if not r.latencies:
            rows.append([r.strategy, str(r.parallel), str(r.files), "-", "-", "-", "-", "-"])
            continue
        rows.append([
            r.strategy, str(r.parallel), str(r.files), str(r.ok), f"{r.total_s:.1f}",
            f"{r.files / r.total_s * 60:.0f}", f"{percentile(r.latencies, 50):.2f}",
            f"{percentile(r.latencies, 95):.2f}",
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    for r in results:
        if r.note:
            print(f"{r.strategy} x{r.parallel}: {r.note}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--files", type=int, default=24, help="documents per run (24)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat each run R times (1)")
    parser.add_argument("--parallel", default="1,2", help="worker counts (1,2)")
    parser.add_argument("--batches", default="8,24", help="batch sizes for batch-N (8,24)")
    parser.add_argument("--smoke", action="store_true", help="3 files, 2 workers, one round")
    parser.add_argument(
        "--strategies",
        default="fresh,batch,unoserver,uno-hidden,fresh-bwrap",
        help="which to run (fresh,batch,unoserver,uno-hidden,fresh-bwrap)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.files, args.rounds, args.parallel, args.batches = 3, 1, "2", "2"
    parallels = [int(p) for p in args.parallel.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    wanted = set(args.strategies.split(","))
    if shutil.which("soffice") is None:
        print("soffice not found: nothing to measure")
        return 0

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="convert-bench-") as tmp:
        root = Path(tmp)
        # LibreOffice's own temp files (lu*.tmp, left behind by a killed office) stay in here.
        (root / "tmp").mkdir()
        os.environ["TMPDIR"] = str(root / "tmp")
        documents = make_documents(root / "docs", args.files)
        log(f"{len(documents)} documents in {root / 'docs'}; warming the page cache")
        warm = root / "warm"
        run_soffice(soffice_command(warm / "profile", warm, documents[:1]))

        runs: list[tuple[str, Callable[[Path, int], Result]]] = []
        if "fresh" in wanted:
            runs.append(("fresh", partial(strategy_soffice, documents, batch=1, sandbox=False)))
        if "batch" in wanted:
            for size in batches:
                batched = partial(strategy_soffice, documents, batch=size, sandbox=False)
                runs.append((f"batch-{size}", batched))
        if wanted & {"unoserver", "uno-hidden"}:
            if (
                not Path("/usr/bin/python3").exists()
                or subprocess.run(
                    ["/usr/bin/python3", "-c", "import uno"], capture_output=True, check=False
                ).returncode
            ):
                print(
                    "unoserver, uno-hidden: skipped (no python3-uno for /usr/bin/python3: "
                    "apt-get install python3-uno)"
                )
                wanted -= {"unoserver", "uno-hidden"}
            elif "unoserver" in wanted and shutil.which("unoserver") is None:
                print(
                    "unoserver: skipped (not installed: /usr/bin/python3 -m pip install "
                    "--break-system-packages unoserver)"
                )
                wanted.discard("unoserver")
        for kind in ("unoserver", "uno-hidden"):
            if kind in wanted:
                runs.append((kind, partial(strategy_warm, documents, kind=kind)))
        if "fresh-bwrap" in wanted:
            if shutil.which("bwrap") is None:
                print("fresh-bwrap: skipped (bwrap not installed)")
            else:
                runs.append(
                    ("fresh-bwrap", partial(strategy_soffice, documents, batch=1, sandbox=True))
                )

        for round_ in range(args.rounds):
            for name, run in runs:
                for parallel in parallels:
                    work = root / f"r{round_}-{name}-p{parallel}"
                    work.mkdir()
                    log(f"round {round_ + 1}: {name} with {parallel} worker(s)")
                    try:
                        result = run(work, parallel)
                    except RuntimeError as exc:
                        log(f"  skipped: {exc}")
                        result = Result(name, parallel, len(documents), note=f"skipped: {exc}")
                    results.append(result)
                    shutil.rmtree(work, ignore_errors=True)
    print(
        f"LibreOffice: {SOFFICE}; {os.cpu_count()} CPUs; {args.files} files "
        f"({', '.join(convert_samples.MAKERS)} in turn); {args.rounds} round(s)"
    )
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

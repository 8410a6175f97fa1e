"""The ``offload`` command, run for real as ``python -m offload`` in a subprocess.

Each test gets a fresh SQLite file in ``tmp_path``; the helper app
``tests/cli_app.py`` is found through ``PYTHONPATH``. The subprocess never
inherits a stray ``$OFFLOAD_URL`` (or terminal settings that change rich's
output). Nothing here asserts on timing: waits are polls with a generous
deadline that only guard against hangs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
APP = "cli_app:app"
#: Guards against a hung subprocess; never a timing assertion.
DEADLINE_S = 60.0
#: Variables that would change what the command does or prints.
SCRUBBED = ("OFFLOAD_URL", "COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
JOB_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
JOB_ID = re.compile(rf"^{JOB_UUID.pattern}$")


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS_DIR), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
    )
    env.update(extra)
    return env


class Cli:
    """Runs ``python -m offload`` against one SQLite file."""

    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path
        self.db = tmp_path / "jobs.db"
        self.url = "sqlite:///" + str(self.db)  # sqlite:////abs/path
        assert self.url.startswith("sqlite:////")
        self.workers: list[subprocess.Popen[str]] = []

    def run(
        self, *args: str, url: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "offload", *args]
        if url:
            cmd += ["--url", self.url]
        return subprocess.run(
            cmd,
            cwd=self.cwd,
            env=env or base_env(),
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            check=False,
        )

    def ok(self, *args: str, **kw: Any) -> str:
        result = self.run(*args, **kw)
        assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        return result.stdout

    def enqueue(self, task: str, json_args: str, *more: str) -> str:
        job_id = self.ok("enqueue", APP, task, json_args, *more).strip()
        assert JOB_ID.match(job_id), job_id
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        data = json.loads(self.ok("job", job_id, "--json"))
        assert isinstance(data, dict)
        return data

    def counts(self) -> dict[str, int]:
        rows = json.loads(self.ok("stats", "--json"))
        assert [r["queue"] for r in rows] == ["default"], rows
        counts: dict[str, int] = rows[0]["counts"]
        return counts

    def start_worker(self, *args: str) -> tuple[subprocess.Popen[str], Path]:
        log = self.cwd / f"worker{len(self.workers)}.log"
        with log.open("w") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "offload", "worker", APP, "--url", self.url, *args],
                cwd=self.cwd,
                env=base_env(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.workers.append(proc)
        return proc, log

    def wait_for_state(self, job_id: str, state: str) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            data = self.job(job_id)
            if data["state"] == state:
                return data
            assert time.monotonic() < deadline, f"job never reached {state}: {data}"
            time.sleep(0.05)

    def stored_rows(self) -> int:
        """Jobs in the file, read directly (0 if the command never created it)."""
        if not self.db.exists():
            return 0
        with sqlite3.connect(self.db) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "offload_jobs" not in tables:
                return 0
            return int(conn.execute("SELECT count(*) FROM offload_jobs").fetchone()[0])


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    runner = Cli(tmp_path)
    yield runner
    for proc in runner.workers:  # only the workers this test started, by their own handle
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=DEADLINE_S)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"stderr is not one line:\n{result.stderr}"
    assert lines[0].startswith("offload: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# -- enqueue, inspect, run ----------------------------------------------------


def test_enqueue_inspect_list_page_stats_and_burst_worker(cli: Cli) -> None:
    first = cli.enqueue("add", "[1, 2]", "--kwargs", '{"scale": 3}')
    enqueued = json.loads(cli.ok("enqueue", APP, "add", "[4, 6]", "--json"))
    second = enqueued["id"]
    assert JOB_ID.match(second) and second != first
    assert (enqueued["state"], enqueued["args"], enqueued["kwargs"]) == ("queued", [4, 6], {})
    assert cli.db.exists()  # --url was honoured: the store is the file we named
    assert not (cli.cwd / "offload.db").exists()

    text = cli.ok("job", first)
    assert first in text
    assert re.search(r"^state: \"queued\"$", text, re.M), text
    assert re.search(r"^task: \"add\"$", text, re.M), text

    data = cli.job(first)
    assert data["id"] == first
    assert data["task"] == "add"
    assert data["queue"] == "default"
    assert data["state"] == "queued"
    assert data["args"] == [1, 2]
    assert data["kwargs"] == {"scale": 3}
    assert data["attempt"] == 0
    assert data["result"] is None

    listed = json.loads(cli.ok("jobs", "--json"))
    assert [j["id"] for j in listed["jobs"]] == [second, first]  # newest first
    assert listed["next_cursor"] is None
    assert "traceback" not in json.dumps(listed)

    page1 = json.loads(cli.ok("jobs", "--state", "queued", "--limit", "1", "--json"))
    assert [j["id"] for j in page1["jobs"]] == [second]
    assert page1["next_cursor"]
    page2 = json.loads(
        cli.ok(
            "jobs", "--state", "queued", "--limit", "1", "--cursor", page1["next_cursor"], "--json"
        )
    )
    assert [j["id"] for j in page2["jobs"]] == [first]
    assert page2["next_cursor"] is None

    counts = cli.counts()
    assert counts["queued"] == 2
    assert sum(counts.values()) == 2

    worker = cli.run("worker", APP, "--burst")
    assert worker.returncode == 0, worker.stderr
    assert "Traceback" not in worker.stderr
    assert "2 succeeded" in worker.stderr

    done = cli.job(first)
    assert (done["state"], done["result"], done["attempt"]) == ("succeeded", 9, 1)
    assert cli.job(second)["result"] == 10
    counts = cli.counts()
    assert (counts["succeeded"], counts["queued"], counts["running"]) == (2, 0, 0)
    assert json.loads(cli.ok("jobs", "--state", "queued", "--json")) == {
        "jobs": [],
        "next_cursor": None,
    }


def test_offload_url_environment_variable(cli: Cli) -> None:
    env = base_env(OFFLOAD_URL=cli.url)
    # APP without ":attribute" means module:app
    job_id = cli.ok("enqueue", "cli_app", "add", "[2, 3]", url=False, env=env).strip()
    assert JOB_ID.match(job_id), job_id
    assert cli.db.exists()
    assert cli.ok("worker", APP, "--burst", url=False, env=env) == ""
    data = json.loads(cli.ok("job", job_id, "--json", url=False, env=env))
    assert (data["state"], data["result"]) == ("succeeded", 5)

    # --url wins over $OFFLOAD_URL, which here names a folder that does not exist
    bad_env = base_env(OFFLOAD_URL="sqlite:///" + str(cli.cwd / "missing" / "x.db"))
    assert cli.job(job_id)["state"] == "succeeded"
    listed = json.loads(cli.ok("jobs", "--json", env=bad_env))
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    # ... and without --url the bad $OFFLOAD_URL really is used
    assert_one_line_error(cli.run("jobs", url=False, env=bad_env), "does not exist")


def test_enqueue_wait_with_a_running_worker(cli: Cli) -> None:
    worker, log = cli.start_worker()
    try:
        waited = cli.run("enqueue", APP, "add", "[20, 22]", "--wait", "--timeout", "60")
        assert waited.returncode == 0, waited.stderr
        assert waited.stdout == "42\n"
        assert waited.stderr == ""

        named = cli.run("enqueue", APP, "nap", "[0]", "--wait", "--timeout", "60")
        assert (named.returncode, named.stdout) == (0, '"slept 0.0"\n'), named.stderr

        as_json = cli.run("enqueue", APP, "add", "[1, 1]", "--wait", "--json", "--timeout", "60")
        assert as_json.returncode == 0, as_json.stderr
        data = json.loads(as_json.stdout)
        assert (data["state"], data["result"]) == ("succeeded", 2)

        dead = cli.run("enqueue", APP, "explode", '["w"]', "--wait", "--timeout", "60")
        line = assert_one_line_error(dead, " ended dead: RuntimeError: boom: w")
        assert dead.stdout == ""
        job_id = line.split("job ", 1)[1].split(" ", 1)[0]
        assert cli.job(job_id)["attempt"] == 2
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=DEADLINE_S) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


# -- failures, retry, cancel, purge -------------------------------------------


def test_dead_retry_cancel_and_purge(cli: Cli) -> None:
    doomed = cli.enqueue("explode", '["x"]')
    fine = cli.enqueue("add", "[1, 1]")
    worker = cli.run("worker", APP, "--burst")
    assert worker.returncode == 0, worker.stderr
    assert "1 dead" in worker.stderr

    dead = cli.job(doomed)
    assert dead["state"] == "dead"
    assert (dead["attempt"], dead["max_attempts"]) == (2, 2)  # retries=1: two attempts
    assert dead["error"]["type"] == "RuntimeError"
    assert dead["error"]["message"] == "boom: x"
    assert "Traceback" in dead["error"]["traceback"]
    assert cli.job(fine)["state"] == "succeeded"

    retried = cli.run("retry", doomed)
    assert (retried.returncode, retried.stdout, retried.stderr) == (0, f"{doomed}: queued\n", "")
    again = cli.job(doomed)
    assert (again["state"], again["attempt"]) == ("queued", 0)

    cancelled = cli.run("cancel", doomed)
    assert (cancelled.returncode, cancelled.stdout) == (0, f"{doomed}: cancelled\n")
    assert cli.job(doomed)["state"] == "cancelled"

    refused = cli.run("cancel", fine)
    assert_one_line_error(refused, fine, "cannot cancel a job that is succeeded")
    assert cli.job(fine)["state"] == "succeeded"

    not_retried = cli.run("retry", fine)
    assert_one_line_error(not_retried, fine, "cannot retry a job that is succeeded")

    queued = cli.enqueue("add", "[5, 5]")
    unsafe = cli.run("purge", "--state", "queued")
    assert_one_line_error(unsafe, "--yes")
    assert cli.job(queued)["state"] == "queued"  # nothing was deleted

    purged = cli.run("purge", "--state", "succeeded")
    assert (purged.returncode, purged.stdout) == (0, "deleted 1 job(s)\n"), purged.stderr
    assert_one_line_error(cli.run("job", fine), "no job with id")
    counts = cli.counts()
    assert (counts["succeeded"], counts["cancelled"], counts["queued"]) == (0, 1, 1)

    confirmed = json.loads(cli.ok("purge", "--state", "queued", "--yes", "--json"))
    assert confirmed == {"deleted": 1}
    assert cli.stored_rows() == 1  # the cancelled job is all that is left


# -- bad input: one readable line, never a traceback ---------------------------

MISSING_DIR_URL = "sqlite:////nonexistent-offload-dir/sub/x.db"

BAD_INPUT = {
    "unknown task": (
        ["enqueue", APP, "nope", "[]"],
        ["'nope'", "known: add, explode, hold, nap"],
    ),
    "malformed JSON args": (
        ["enqueue", APP, "add", "[1,"],
        ["JSON_ARGS is not valid JSON"],
    ),
    "JSON args not an array": (
        ["enqueue", APP, "add", '{"a": 1}'],
        ["JSON_ARGS must be a JSON array"],
    ),
    "kwargs not an object": (
        ["enqueue", APP, "add", "[1, 2]", "--kwargs", "[3]"],
        ["--kwargs must be a JSON object"],
    ),
    "malformed kwargs": (
        ["enqueue", APP, "add", "[1, 2]", "--kwargs", "{scale: 3}"],
        ["--kwargs is not valid JSON"],
    ),
    "missing argument": (
        ["enqueue", APP, "add", "[1]"],
        ["'add'", "missing a required argument: 'b'"],
    ),
    "too many arguments": (
        ["enqueue", APP, "add", "[1, 2, 3]"],
        ["'add'", "too many positional arguments"],
    ),
    "unexpected keyword": (
        ["enqueue", APP, "add", "[1, 2]", "--kwargs", '{"zzz": 1}'],
        ["'add'", "unexpected keyword argument 'zzz'"],
    ),
    "positional of the wrong type": (
        ["enqueue", APP, "add", '["x", 2]'],
        ["argument 'a'", "Expected `int`, got `str`"],
    ),
    "keyword of the wrong type": (
        ["enqueue", APP, "add", "[1, 2]", "--kwargs", '{"scale": "big"}'],
        ["argument 'scale'", "Expected `int`, got `str`"],
    ),
    "unknown job id (job)": (
        ["job", "no-such-id"],
        ["no job with id 'no-such-id'"],
    ),
    "unknown job id (retry)": (
        ["retry", "no-such-id"],
        ["no-such-id: no such job"],
    ),
    "unknown job id (cancel)": (
        ["cancel", "no-such-id"],
        ["no-such-id: no such job"],
    ),
    "unknown APP module": (
        ["enqueue", "no_such_offload_module:app", "add", "[1, 2]"],
        ["cannot import 'no_such_offload_module'", "PYTHONPATH"],
    ),
    "unknown APP module (worker)": (
        ["worker", "no_such_offload_module:app", "--burst"],
        ["cannot import 'no_such_offload_module'"],
    ),
    "APP attribute not an Offload app": (
        ["enqueue", "cli_app:not_an_app", "add", "[1, 2]"],
        ["cli_app:not_an_app is a dict, not an offload.Offload app"],
    ),
    "APP attribute missing": (
        ["worker", "cli_app:nothing_here", "--burst"],
        ["module 'cli_app' has no attribute 'nothing_here'"],
    ),
    "APP spec malformed": (
        ["enqueue", "cli_app:", "add", "[1, 2]"],
        ["APP must be module:attribute"],
    ),
    "wait gives up": (
        ["enqueue", APP, "add", "[1, 2]", "--wait", "--timeout", "0.2"],
        ["is still queued"],
    ),
    "purge of live jobs without --yes": (
        ["purge", "--state", "running", "--state", "succeeded"],
        ["running", "--yes"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_bad_input_is_one_line(cli: Cli, case: str) -> None:
    args, needles = BAD_INPUT[case]
    result = cli.run(*args)
    assert_one_line_error(result, *needles)
    assert result.stdout == ""
    if case == "wait gives up":  # the job stays stored, and the message says which it is
        (job_id,) = {m.group(0) for m in JOB_UUID.finditer(result.stderr)}
        assert cli.job(job_id)["state"] == "queued"
    else:
        assert cli.stored_rows() == 0  # a refused enqueue stores nothing


UNREACHABLE = {
    "missing folder (enqueue)": (
        ["enqueue", APP, "add", "[1, 2]"],
        MISSING_DIR_URL,
        "the folder '/nonexistent-offload-dir/sub' does not exist",
    ),
    "missing folder (worker)": (
        ["worker", APP, "--burst"],
        MISSING_DIR_URL,
        "does not exist",
    ),
    "missing folder (job)": (["job", "some-id"], MISSING_DIR_URL, "does not exist"),
    "missing folder (stats)": (["stats"], MISSING_DIR_URL, "does not exist"),
    "bad scheme (enqueue)": (
        ["enqueue", APP, "add", "[1, 2]"],
        "foo://x",
        "unsupported offload URL 'foo://x'",
    ),
    "bad scheme (worker)": (["worker", APP, "--burst"], "foo://x", "unsupported offload URL"),
    "bad scheme (jobs)": (["jobs"], "foo://x", "unsupported offload URL"),
    "bad scheme (retry)": (["retry", "some-id"], "foo://x", "unsupported offload URL"),
    "PostgreSQL down (enqueue)": (
        ["enqueue", APP, "add", "[1, 2]"],
        "postgresql://postgres@127.0.0.1:1/nope",
        "cannot connect to PostgreSQL",
    ),
    "PostgreSQL down (jobs)": (
        ["jobs"],
        "postgresql://postgres@127.0.0.1:1/nope",
        "cannot connect to PostgreSQL",
    ),
    "PostgreSQL down (migrate)": (
        ["migrate"],
        "postgresql://postgres@127.0.0.1:1/nope",
        "cannot connect to PostgreSQL",
    ),
}


@pytest.mark.parametrize("case", list(UNREACHABLE), ids=list(UNREACHABLE))
def test_unreachable_backend_is_one_line(cli: Cli, case: str) -> None:
    args, url, needle = UNREACHABLE[case]
    result = cli.run(*args, "--url", url, url=False)
    assert_one_line_error(result, needle)
    assert result.stdout == ""
    assert not Path("/nonexistent-offload-dir").exists()


# -- graceful shutdown ----------------------------------------------------------


def test_sigterm_lets_the_running_job_finish(cli: Cli) -> None:
    gate = cli.cwd / "release-the-job"
    job_id = cli.enqueue("hold", json.dumps([str(gate)]))
    worker, log = cli.start_worker()
    running = cli.wait_for_state(job_id, "running")
    assert running["worker"]

    worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + DEADLINE_S
    while "stopping" not in log.read_text():
        assert worker.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    assert "for 1 running job(s)" in log.read_text()  # the signal came mid-job
    assert worker.poll() is None  # ... and the worker waits for it
    assert cli.job(job_id)["state"] == "running"

    gate.touch()  # the job ends now
    assert worker.wait(timeout=DEADLINE_S) == 0, log.read_text()
    output = log.read_text()
    assert "Traceback" not in output
    assert "1 started, 1 succeeded" in output
    assert "0 handed back" in output
    done = cli.job(job_id)
    assert (done["state"], done["result"], done["attempt"]) == ("succeeded", "released", 1)

    assert "refused" not in output  # the shutdown flush must not resend an in-flight batch


# -- the human-readable views ---------------------------------------------------


def test_job_text_shows_markup_like_arguments_verbatim(cli: Cli) -> None:
    eaten = cli.enqueue("add", "[1, 2]", "--kwargs", '{"scale": 1}', "--key", "[b]k[/b]")
    assert "[b]k[/b]" in cli.ok("job", eaten)
    crashing = cli.enqueue("explode", '["[/]"]')
    assert '["[/]"]' in cli.ok("job", crashing)


def test_tables_show_markup_like_queue_names(cli: Cli) -> None:
    cli.enqueue("add", "[1, 2]", "--queue", "[/x]")
    assert "[/x]" in cli.ok("jobs")
    assert "[/x]" in cli.ok("stats")


def test_jobs_table_shows_whole_ids_when_piped(cli: Cli) -> None:
    job_id = cli.enqueue("add", "[1, 2]")
    table = cli.ok("jobs", env=base_env(COLUMNS="80"))
    row = next(line for line in table.splitlines() if job_id in line)
    assert "add" in row and "queued" in row


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "--limit", "0"],
        ["jobs", "--state", "bogus"],
        ["job"],
        ["pause"],
        ["cancel", "--state", "queued", "--expect", "-1"],
    ],
)
def test_usage_mistakes_are_one_line_too(cli: Cli, args: list[str]) -> None:
    line = assert_one_line_error(cli.run(*args), "--help")
    assert "Usage:" not in line


def test_control_characters_from_a_job_never_reach_the_terminal(cli: Cli) -> None:
    doomed = cli.enqueue("explode", '["\\u001b[2J\\u001b]0;pwned\\u0007"]')
    assert cli.run("worker", APP, "--burst").returncode == 0
    for args in (["job", doomed], ["jobs"], ["jobs", "--state", "dead"]):
        shown = cli.ok(*args)
        assert "\x1b" not in shown and "\x07" not in shown, args
    assert "\\x1b[2J" in cli.ok("job", doomed)


def test_bulk_actions_count_first_then_act_on_the_count_given(cli: Cli) -> None:
    for _ in range(3):
        cli.enqueue("add", "[1, 2]")
    assert "3 job(s) match; run again with --expect 3" in cli.ok("cancel", "--state", "queued")
    refused = cli.run("cancel", "--state", "queued", "--expect", "2")
    assert_one_line_error(refused, "matches 3 job(s), more than the 2")
    assert cli.ok("cancel", "--state", "queued", "--expect", "3") == "cancel: 3 job(s)\n"
    assert json.loads(cli.ok("pause", "default", "--json")) == {
        "queue": "default", "paused": True, "changed": True}  # fmt: skip
    assert "paused" in cli.ok("stats")

"""The dashboard as people use it, in Debian's Chromium: an operator finds a failed job by
its argument, retries it and watches it succeed without reloading; bulk-cancels a
search after a confirmation that states the count; a viewer sees no actions and a forged
one is refused; a submitter sees only their own work; HTML in task names and arguments
stays text; no page logs an error or a CSP violation. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from browser_helpers import ARTIFACTS, chromium
from dashboard_app import HTML_TASK
from dashboard_helpers import PASSWORD, Board, start_board

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/bin/chromium"),
    reason="needs Debian's chromium (./run test installs it)",
)
XSS = '<script>window.pwned=2</script><img src=x onerror="window.pwned=3">'
# every CSP violation, recorded before any page script runs (an init script is not inline)
RECORD_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    folder = tmp_path_factory.mktemp("dashboard-browser")
    yield from start_board(f"sqlite:///{folder}/jobs.db", folder)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


class Person:
    """A browser context logged in as one user, collecting every page's problems."""

    def __init__(self, browser: Any, board: Board, name: str) -> None:
        self.board = board
        self.context = browser.new_context()
        self.context.add_init_script(RECORD_CSP)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on(
            "console", lambda m: self.problems.append(m.text) if m.type == "error" else None
        )
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))
        self.page.goto(board.url + "/")
        assert "/login" in self.page.url  # no session: the login page
        self.page.get_by_label("User name").fill(name)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(board.url + "/")

    def go(self, path: str) -> Any:
        self.page.goto(self.board.url + path)
        return self.page

    def check_clean(self) -> None:
        violations = self.page.evaluate("window.__csp")
        assert violations == [], violations
        assert self.problems == [], self.problems
        assert self.page.evaluate("window.pwned") is None

    def shoot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for scheme in ("light", "dark"):
            self.page.emulate_media(color_scheme=scheme)
            self.page.wait_for_timeout(300)  # charts redraw on the scheme change
            self.page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}-{scheme}.png"),
                                 full_page=True)  # fmt: skip
        self.page.emulate_media(color_scheme="light")

    def close(self) -> None:
        self.context.close()


def _wait_state(app: Any, job_id: str, states: tuple[str, ...]) -> None:
    deadline = time.monotonic() + 30
    while app.admin.get(job_id).state.value not in states:
        assert time.monotonic() < deadline, app.admin.get(job_id)
        time.sleep(0.05)


def _state(board: Board, job_id: str) -> str:
    return board.run(lambda app: app.admin.get(job_id).state.value)


def test_find_retry_and_watch_it_succeed(board: Board, browser: Any) -> None:
    needle = "invoice-7731"

    def setup(app: Any) -> str:
        flaky = app.tasks["flaky"].options(owner="alice")
        target = flaky.enqueue(needle).id
        for other in ("invoice-1000", "invoice-2000"):
            flaky.enqueue(other)
        app.tasks[HTML_TASK].options(owner="alice").enqueue(XSS)
        _wait_state(app, target, ("dead",))
        return str(target)

    board.run(setup)
    ada = Person(browser, board, "ada")
    ada.page.get_by_role("heading", name="Queues").wait_for()
    ada.shoot("overview")
    ada.check_clean()

    page = ada.go("/jobs")
    page.get_by_label("Search id, task, owner and arguments").fill(needle)
    page.get_by_label("dead", exact=True).check()
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#jobs-live tbody tr")
    rows.first.wait_for()
    assert rows.count() == 1 and "flaky" in rows.first.inner_text()
    ada.shoot("jobs-search")
    rows.first.get_by_role("link").click()
    page.wait_for_url(re.compile(r"/jobs/"))
    assert "the upstream service refused" in page.inner_text("main")
    assert needle in page.inner_text("pre.json")
    ada.shoot("job-dead")
    ada.check_clean()

    (board.allow_dir / f"{needle}.ok").write_text("fixed")
    page.get_by_role("button", name="Retry").click()
    page.get_by_role("status").filter(has_text="Job retried.").wait_for()
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    # the state changes on the page itself, pushed by the live feed
    page.locator("#job-live h1 .state-succeeded").wait_for(timeout=30_000)
    assert navigations == [], navigations
    assert "report.txt" in page.inner_text("main")
    assert "attempts" in page.inner_text("main").lower()
    ada.shoot("job")
    ada.check_clean()
    ada.close()


def test_bulk_cancel_states_the_count(board: Board, browser: Any) -> None:
    def setup(app: Any) -> tuple[list[str], str]:
        sleepy = app.tasks["sleepy"].options(owner="alice", delay=3600)
        chosen = [sleepy.enqueue(0.01).id for _ in range(7)]
        return chosen, app.tasks["flaky"].options(owner="alice", delay=3600).enqueue("later").id

    chosen, kept = board.run(setup)
    otto = Person(browser, board, "otto")
    page = otto.go("/jobs?task=sleepy&state=scheduled")
    page.get_by_role("link", name="Cancel all…").click()
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == "Cancel 7 jobs?"
    otto.shoot("confirm")
    page.get_by_role("button", name="Cancel 7 jobs").click()
    page.get_by_role("status").wait_for()
    assert "7 jobs cancelled." in page.get_by_role("status").inner_text()
    otto.check_clean()
    otto.close()
    assert {_state(board, j) for j in chosen} == {"cancelled"}
    assert _state(board, kept) == "scheduled"


def test_viewer_sees_no_actions_and_cannot_forge_one(board: Board, browser: Any) -> None:
    job = board.run(lambda app: app.tasks["flaky"].options(owner="alice", delay=3600)
                    .enqueue("viewer-case"))  # fmt: skip
    vic = Person(browser, board, "vic")
    page = vic.go(f"/jobs/{job.id}")
    assert page.get_by_role("button", name="Cancel").count() == 0
    assert page.locator("form[action*='/cancel']").count() == 0
    page = vic.go("/jobs")
    assert page.get_by_role("link", name="Cancel all…").count() == 0
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    forged = vic.page.request.post(f"{board.url}/jobs/{job.id}/cancel", form={"csrf": token},
                                   max_redirects=0)  # fmt: skip
    assert forged.status == 403
    vic.check_clean()
    vic.close()
    assert _state(board, job.id) == "scheduled"


def test_submitter_sees_only_their_own_work(board: Board, browser: Any) -> None:
    def setup(app: Any) -> tuple[str, str]:
        flaky = app.tasks["flaky"]
        return (flaky.options(owner="bob", delay=3600).enqueue("bob-only").id,
                flaky.options(owner="alice", delay=3600).enqueue("alice-only").id)  # fmt: skip

    mine, theirs = board.run(setup)
    bea = Person(browser, board, "bea")
    assert bea.page.get_by_role("heading", name="My work").is_visible()
    bea.shoot("my-work")
    page = bea.go("/jobs")
    listed = page.locator("#jobs-live")
    assert listed.locator(f"a[href='/jobs/{mine}']").count() == 1
    assert listed.locator(f"a[href='/jobs/{theirs}']").count() == 0
    missing = bea.page.goto(f"{board.url}/jobs/{theirs}")
    assert missing is not None and missing.status == 404
    assert bea.go("/workers") and "Not found" in bea.page.inner_text("h1")
    bea.close()


def test_html_stays_text_and_every_page_is_clean(board: Board, browser: Any) -> None:
    def setup(app: Any) -> tuple[str, str, str]:
        job = app.tasks[HTML_TASK].options(owner="alice").enqueue(XSS)
        _wait_state(app, job.id, ("succeeded",))
        batch = app.batch([app.tasks["sleepy"].options(owner="alice").s(0.01) for _ in range(3)])
        secret = app.tasks["call_api"].options(owner="alice").enqueue("https://x.test/", "sk-9")
        return job.id, batch.id, secret.id

    job_id, batch_id, secret_id = board.run(setup)
    ada = Person(browser, board, "ada")
    page = ada.go(f"/jobs/{job_id}")
    assert json.dumps(XSS) in page.inner_text("pre.json")  # the arguments, as JSON text
    assert 'onerror="window.pwned=1"' in page.inner_text("h1")  # the task's name, as text
    page = ada.go(f"/jobs/{secret_id}")
    assert "sk-9" not in page.content() and "[redacted]" in page.inner_text("pre.json")
    for path, name in (
        ("/batches", "batches"),
        (f"/batches/{batch_id}", "batch"),
        ("/schedules", "schedules"),
        ("/workers", "workers"),
        ("/jobs?text=%3Cscript%3E", "jobs-html-search"),
        (f"/jobs?text=%3Cscript%3E&task={quote(HTML_TASK)}", "jobs-html-task"),
        ("/?span=day", "overview-day"),
    ):
        ada.go(path)
        ada.page.wait_for_load_state("load")
        ada.page.wait_for_timeout(500)  # the charts and the live feed settle
        ada.shoot(name)
        ada.check_clean()
    ada.page.set_viewport_size({"width": 390, "height": 844})
    ada.go("/jobs")
    ada.shoot("phone-jobs")
    ada.check_clean()
    ada.close()


HIDE = """(hidden) => {
  window.__hidden = hidden;
  for (const name of ['hidden', 'visibilityState']) {
    Object.defineProperty(document, name, {configurable: true,
      get: () => name === 'hidden' ? window.__hidden : (window.__hidden ? 'hidden' : 'visible')});
  }
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_a_hidden_tab_pauses_and_catches_up_when_shown(board: Board, browser: Any) -> None:
    job_id = board.run(lambda app: app.tasks["flaky"].options(owner="alice", delay=3600)
                       .enqueue("hidden-tab").id)  # fmt: skip
    otto = Person(browser, board, "otto")
    page = otto.go(f"/jobs/{job_id}")
    page.locator("#job-live h1 .state-scheduled").wait_for()
    page.wait_for_timeout(1500)  # the live stream is open and its first refresh is done
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url) if r.headers.get("hx-request") else None)
    page.evaluate(HIDE, True)
    board.run(lambda app: app.admin.cancel(job_id))
    page.wait_for_timeout(2500)  # the change's event arrives; a hidden tab fetches nothing
    assert fetched == []
    assert page.locator("#job-live h1 .state-scheduled").count() == 1
    page.evaluate(HIDE, False)
    page.locator("#job-live h1 .state-cancelled").wait_for(timeout=10_000)
    assert len(fetched) == 1, fetched  # one catch-up, not one per missed event
    otto.check_clean()
    otto.close()

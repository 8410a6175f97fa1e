"""The dashboard over plain HTTP, probed as a hostile user would: every page asks for a
login and never sends you to another site after it; cookies and headers that keep
scripts and frames out; no change without the page's own CSRF token; wrong, guessed,
disabled, changed and forged logins; each role kept to what it may see and do; a bulk
action that does exactly what was confirmed; nonsense in every query answered with a
message; the live feed; secret arguments never shown. A real ``offload serve`` and
worker on SQLite, spoken to with httpx."""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from dashboard_helpers import PASSWORD, USERS, Board, csrf_of, start_board
from offload import Offload

#: The dashboard's Content-Security-Policy, exactly (a change to it is a change to review).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
LOGIN_REFUSED = "That name and password do not match an active user."
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    folder = tmp_path_factory.mktemp("dashboard-http")
    yield from start_board(f"sqlite:///{folder}/jobs.db", folder)


def _serve(folder: Path, *extra: str) -> Iterator[Board]:
    """A server of its own (no worker) with the one user ``ada``: for what would lock
    the shared board's address out, or needs other ``offload serve`` options."""
    yield from start_board(f"sqlite:///{folder}/jobs.db", folder, *extra, workers=False,
                           users={"ada": USERS["ada"]})  # fmt: skip


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    """Served as behind a TLS proxy on this machine: X-Forwarded-* from 127.0.0.1 trusted."""
    yield from _serve(tmp_path_factory.mktemp("dashboard-proxied"),
                      "--forwarded-allow-ips", "127.0.0.1")  # fmt: skip


@pytest.fixture(scope="module")
def lone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    """Served with the defaults, for the login limiter (it locks 127.0.0.1 out a minute)."""
    yield from _serve(tmp_path_factory.mktemp("dashboard-lone"))


# ---------------------------------------------------------------------------------------
# helpers


def _label(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _later(board: Board, owner: str, label: str, task: str = "flaky") -> str:
    """A job of ``owner``'s that waits an hour: it stays ``scheduled`` until acted on."""
    args: tuple[Any, ...] = (label,) if task == "flaky" else (0.01,)
    job = board.run(lambda app: app.tasks[task].options(owner=owner, delay=3600).enqueue(*args))
    return str(job.id)


def _state(board: Board, job_id: str) -> str:
    return board.run(lambda app: app.admin.get(job_id).state.value)


def _wait_state(board: Board, job_id: str, states: tuple[str, ...]) -> None:
    def wait(app: Offload) -> None:
        deadline = time.monotonic() + 60
        while app.admin.get(job_id).state.value not in states:
            assert time.monotonic() < deadline, app.admin.get(job_id)
            time.sleep(0.05)

    board.run(wait)


def _paused(board: Board, queue: str) -> bool:
    return board.run(lambda app: {q.name: q.paused for q in app.admin.queues()}[queue])


def _queue_form(board: Board, queue: str = "slow") -> tuple[str, dict[str, str]]:
    """The overview's own form that pauses ``queue``: where it posts and its hidden fields
    but the token, read as a browser would."""
    page = board.login("ada").get("/").text
    forms = re.findall(r'<form method="post" action="([^"]+)">(.*?)</form>', page, re.S)
    for raw, body in forms:
        hidden = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', body)
        fields = {k: html.unescape(v) for k, v in hidden if k != "csrf"}
        path = html.unescape(raw)
        if path.endswith("/pause") and (fields.get("queue") == queue or f"/{queue}/" in path):
            return path, fields
    raise AssertionError(f"no form to pause queue {queue} on the overview")


def _problem(page: str) -> str:
    """The text of the page's message (the ``problem`` paragraph), unescaped."""
    found = re.search(r'class="problem"[^>]*>(.*?)</p>', page, re.S)
    assert found is not None, page[:1500]
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def _notice(page: str) -> str:
    """The text of the page's notice of what was just done (``role="status"``), or ""."""
    found = re.search(r'<p class="notice" role="status">(.*?)</p>', page, re.S)
    return html.unescape(found.group(1)).strip() if found else ""


def _to_login(response: httpx.Response, path: str) -> None:
    assert response.status_code == 303, (response.status_code, response.text[:300])
    assert response.headers["location"] == "/login?next=" + quote(path, safe="")


def _cookies_set(response: httpx.Response) -> dict[str, dict[str, str]]:
    """Each Set-Cookie as {attribute (lower case): value}, by cookie name."""
    found: dict[str, dict[str, str]] = {}
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = (part.strip() for part in header.split(";"))
        name, _, value = first.partition("=")
        found[name] = {"": value}
        for attribute in attributes:
            key, _, val = attribute.partition("=")
            found[name][key.lower()] = val
    return found


def _bare(client: httpx.Client) -> httpx.Client:
    """The same session (its cookies) without the CSRF header that ``Board.login`` sets."""
    return httpx.Client(base_url=client.base_url, cookies=client.cookies, timeout=30)


def _token(client: httpx.Client) -> str:
    return str(client.headers["X-CSRF-Token"])


def _try_login(
    client: httpx.Client,
    name: str,
    password: str = PASSWORD,
    headers: dict[str, str] | None = None,
    target: str = "/",
) -> httpx.Response:
    """A login as a browser makes it: the login page (its token), then the form."""
    page = client.get("/login", params={"next": target})
    fields = {"name": name, "password": password, "next": target, "csrf": csrf_of(page.text)}
    return client.post("/login", headers=headers or {}, data=fields)


def _assert_hardened(response: httpx.Response) -> None:
    headers = response.headers
    assert headers["content-security-policy"] == CSP
    directives = [d.strip() for d in headers["content-security-policy"].split(";")]
    assert "frame-ancestors 'none'" in directives
    assert "'unsafe-inline'" not in headers["content-security-policy"]
    assert "'unsafe-eval'" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert "no-store" in headers["cache-control"]
    assert headers["x-frame-options"] == "DENY"


# ---------------------------------------------------------------------------------------
# 1. no session: the login page, and after it never another site

GUARDED = [
    "/",
    "/?span=day",
    "/jobs",
    "/jobs?state=dead&text=x&task=flaky",
    "/jobs/some-job-id",
    "/jobs/some-job-id/files/report.txt",
    "/batches",
    "/batches/some-batch",
    "/schedules",
    "/workers",
    "/live",
    "/live?job=some-job-id",
    "/charts.json",
    "/bulk/cancel?task=sleepy",
]


@pytest.mark.parametrize("path", GUARDED)
def test_every_page_without_a_session_redirects_to_login(board: Board, path: str) -> None:
    _to_login(httpx.get(board.url + path), path)


def test_actions_without_a_session_redirect_to_login_and_change_nothing(board: Board) -> None:
    job = _later(board, "alice", _label("no-session"))
    pause = _queue_form(board)
    with httpx.Client(base_url=board.url) as stranger:
        token = csrf_of(stranger.get("/login").text)  # a valid token, but no session
        for path, fields in ((f"/jobs/{job}/cancel", {}), (f"/jobs/{job}/delete", {}),
                             ("/bulk/cancel", {"task": "flaky", "expected": "100"}),
                             pause):  # fmt: skip
            answer = stranger.post(path, data={"csrf": token, **fields})
            assert answer.status_code == 303, (path, answer.status_code)
            assert answer.headers["location"].startswith("/login?next=")
    assert _state(board, job) == "scheduled"
    assert not _paused(board, "slow")


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example",
        "//evil.example/jobs",
        "/\\evil.example",
        "http:evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        "evil.example",
    ],
)
def test_login_never_sends_you_to_another_site(board: Board, target: str) -> None:
    with httpx.Client(base_url=board.url, timeout=30) as client:
        page = client.get("/login", params={"next": target})
        assert page.status_code == 200
        assert 'name="next" value="/"' in page.text  # the form carries home, not the target
        answer = _try_login(client, "otto", target=target)  # posts the target all the same
        assert answer.status_code == 303
        assert answer.headers["location"] == "/"
        again = client.get("/login", params={"next": target})  # signed in already
        assert again.status_code == 303
        assert again.headers["location"] == "/"


def test_login_goes_back_to_the_page_asked_for(board: Board) -> None:
    asked = "/jobs?state=dead&task=flaky"
    with httpx.Client(base_url=board.url, timeout=30) as client:
        first = client.get(asked)
        _to_login(first, asked)
        page = client.get(first.headers["location"])
        assert f'name="next" value="{html.escape(asked)}"' in page.text
        answer = _try_login(client, "otto", target=asked)
        assert answer.status_code == 303
        assert answer.headers["location"] == asked
        assert client.get(asked).status_code == 200


# ---------------------------------------------------------------------------------------
# 2. cookies


def _login_answer(board: Board, headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(base_url=board.url, timeout=30) as client:
        return _try_login(client, "ada", headers=headers)


def _assert_cookie_flags(cookie: dict[str, str], *, secure: bool) -> None:
    assert "httponly" in cookie, cookie
    assert cookie.get("samesite", "").lower() == "strict", cookie
    assert cookie.get("path") == "/", cookie
    assert ("secure" in cookie) is secure, cookie


def test_cookies_are_httponly_strict_and_site_wide(board: Board) -> None:
    with httpx.Client(base_url=board.url) as client:
        first = _cookies_set(client.get("/login"))
    assert set(first) == {"offload_csrf"}
    _assert_cookie_flags(first["offload_csrf"], secure=False)
    answer = _login_answer(board)
    assert answer.status_code == 303
    cookies = _cookies_set(answer)
    assert set(cookies) == {"offload_session", "offload_csrf"}
    for cookie in cookies.values():
        _assert_cookie_flags(cookie, secure=False)  # plain http: a Secure cookie would be lost
    assert int(cookies["offload_session"]["max-age"]) <= 12 * 3600


def test_a_forwarded_proto_is_not_trusted_by_default(board: Board) -> None:
    """``offload serve`` runs uvicorn with proxy headers off unless told which proxy to
    trust: anyone's ``X-Forwarded-Proto`` changes nothing."""
    answer = _login_answer(board, {"X-Forwarded-Proto": "https"})
    assert answer.status_code == 303
    for cookie in _cookies_set(answer).values():
        _assert_cookie_flags(cookie, secure=False)


def test_behind_a_trusted_tls_proxy_cookies_are_secure(proxied: Board) -> None:
    plain = _login_answer(proxied)
    for cookie in _cookies_set(plain).values():
        _assert_cookie_flags(cookie, secure=False)
    answer = _login_answer(proxied, {"X-Forwarded-Proto": "https"})
    assert answer.status_code == 303
    cookies = _cookies_set(answer)
    assert set(cookies) == {"offload_session", "offload_csrf"}
    for cookie in cookies.values():
        _assert_cookie_flags(cookie, secure=True)


# ---------------------------------------------------------------------------------------
# 3. security headers


def test_pages_carry_the_security_headers(board: Board) -> None:
    job = _later(board, "alice", _label("headers"))
    with httpx.Client(base_url=board.url) as stranger:
        _assert_hardened(stranger.get("/login"))
        _assert_hardened(stranger.get("/"))  # the redirect to the login page too
        _assert_hardened(stranger.get("/nowhere", headers={"Accept": "text/html"}))
    ada = board.login("ada")
    for path in ("/", "/?span=day", "/jobs", f"/jobs/{job}", "/batches", "/schedules",
                 "/workers", "/bulk/cancel?task=sleepy", "/jobs?state=bogus", "/?span=year",
                 "/jobs/no-such-job", "/charts.json"):  # fmt: skip
        answer = ada.get(path)
        assert answer.status_code < 500, path
        _assert_hardened(answer)
        if answer.headers["content-type"].startswith("text/html"):
            # nothing inline that the policy would have to allow
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", answer.text), path
            assert not re.search(r"\son[a-z]+\s*=", answer.text), path
            assert not re.search(r"\sstyle\s*=", answer.text), path
    # an htmx request for a live region: its fragment, hardened as well
    fragment = ada.get("/jobs", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    _assert_hardened(fragment)


# ---------------------------------------------------------------------------------------
# 4. CSRF


@pytest.fixture
def resume_slow(board: Board) -> Iterator[None]:
    yield
    board.run(lambda app: app.admin.resume("slow"))


def _csrf_case(board: Board, kind: str, client: httpx.Client
               ) -> tuple[str, dict[str, str], Callable[[], bool]]:  # fmt: skip
    """(path, form fields, whether the action took place) for one kind of POST."""
    if kind == "logout":
        return "/logout", {}, lambda: client.get("/").status_code == 303
    if kind == "job":
        job = _later(board, "alice", _label("csrf-job"))
        return f"/jobs/{job}/cancel", {}, lambda: _state(board, job) == "cancelled"
    if kind == "bulk":
        label = _label("csrf-bulk")
        jobs = [_later(board, "alice", label) for _ in range(2)]
        fields = {"task": "flaky", "text": label, "state": "scheduled", "expected": "2"}
        return "/bulk/cancel", fields, lambda: {_state(board, j) for j in jobs} == {"cancelled"}
    assert kind == "queue"
    path, fields = _queue_form(board)
    return path, fields, lambda: _paused(board, "slow")


@pytest.mark.parametrize("kind", ["logout", "job", "bulk", "queue"])
def test_a_post_needs_its_own_sessions_token(board: Board, kind: str, resume_slow: None) -> None:
    ada = board.login("ada")
    other = board.login("otto")  # a valid token, of another session's cookie
    own, foreign = _token(ada), _token(other)
    with _bare(ada) as client:
        path, fields, happened = _csrf_case(board, kind, client)
        assert not happened()
        attempts: list[tuple[dict[str, str], dict[str, str]]] = [
            ({}, {}),  # no token at all
            ({"csrf": ""}, {"X-CSRF-Token": ""}),  # empty
            ({"csrf": foreign}, {}),  # another session's, in the form
            ({}, {"X-CSRF-Token": foreign}),  # and as the header
            ({"csrf": own[:-1] + ("0" if own[-1] != "0" else "1")}, {}),  # one digit changed
            ({"csrf": own}, {"Origin": EVIL}),  # the right token from another site
            ({}, {"X-CSRF-Token": own, "Origin": "http://evil.example"}),
            ({"csrf": own}, {"Origin": board.url + ".evil.example"}),
        ]
        for extra_fields, headers in attempts:
            answer = client.post(path, data={**fields, **extra_fields}, headers=headers)
            assert answer.status_code == 403, (extra_fields, headers, answer.text[:300])
            assert "text/html" in answer.headers["content-type"]
            assert not happened(), (extra_fields, headers)
        # the page's own token, from the page's own origin: done
        answer = client.post(path, data={**fields, "csrf": own}, headers={"Origin": board.url})
        assert answer.status_code == 303, answer.text[:500]
        assert happened()


def test_login_needs_its_own_token(board: Board) -> None:
    fields = {"name": "otto", "password": PASSWORD, "next": "/"}
    with (
        httpx.Client(base_url=board.url) as client,
        httpx.Client(base_url=board.url) as other,
        httpx.Client(base_url=board.url) as cookieless,
    ):
        own = csrf_of(client.get("/login").text)
        nonce = client.cookies["offload_csrf"]
        foreign = csrf_of(other.get("/login").text)
        for data, headers in (
            (fields, {}),
            ({**fields, "csrf": foreign}, {}),
            (fields, {"X-CSRF-Token": foreign}),
            ({**fields, "csrf": own}, {"Origin": EVIL}),
        ):
            answer = client.post("/login", data=data, headers=headers)
            assert answer.status_code == 403, (data, headers)
            assert "offload_session" not in client.cookies
        answer = cookieless.post("/login", data={**fields, "csrf": own})  # no CSRF cookie
        assert answer.status_code == 403
        assert "offload_session" not in cookieless.cookies
        answer = client.post("/login", data={**fields, "csrf": own}, headers={"Origin": board.url})
        assert answer.status_code == 303
        assert "offload_session" in client.cookies
        # the login gave a new CSRF cookie: the token of the login page is worthless now
        assert client.cookies["offload_csrf"] != nonce
        stale = client.post("/logout", data={"csrf": own})
        assert stale.status_code == 403
        assert client.get("/").status_code == 200


def test_a_non_ascii_token_is_refused_as_a_bad_token(board: Board) -> None:
    job = _later(board, "alice", _label("non-ascii"))
    with _bare(board.login("ada")) as client:
        for fields, headers in (({"csrf": "é" * 64}, {}), ({}, {"X-CSRF-Token": b"\xe9" * 64})):
            answer = client.post(f"/jobs/{job}/cancel", data=fields, headers=headers)
            assert _state(board, job) == "scheduled"
            assert answer.status_code == 403, _problem(answer.text)
            assert "security token" in _problem(answer.text)


def test_a_planted_csrf_nonce_and_its_token_do_not_work_with_anothers_session(
    board: Board,
) -> None:
    job = _later(board, "alice", _label("planted"))
    with httpx.Client(base_url=board.url) as attacker:
        token = csrf_of(attacker.get("/login").text)  # no login needed for a pair
        nonce = attacker.cookies["offload_csrf"]
    session = board.login("ada").cookies["offload_session"]
    cookie = f"offload_session={session}; offload_csrf={nonce}"  # the victim, with a planted nonce
    with httpx.Client(base_url=board.url, headers={"Cookie": cookie}) as victim:
        answer = victim.post(f"/jobs/{job}/cancel", data={"csrf": token})
    assert answer.status_code == 403
    assert _state(board, job) == "scheduled"


# ---------------------------------------------------------------------------------------
# 5. logins


def test_a_wrong_password_and_an_unknown_user_read_the_same(board: Board) -> None:
    with httpx.Client(base_url=board.url) as client:
        wrong = _try_login(client, "ada", PASSWORD + "!")
        unknown = _try_login(client, "nobody-here", PASSWORD)
        hostile = _try_login(client, '<script>alert(1)</script>"', PASSWORD)
        assert "offload_session" not in client.cookies
    for answer in (wrong, unknown, hostile):
        assert answer.status_code == 401
        assert "text/html" in answer.headers["content-type"]
        assert _problem(answer.text) == LOGIN_REFUSED
        _assert_hardened(answer)
    assert "<script>alert(1)</script>" not in hostile.text  # the name shown again, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in hostile.text


@pytest.mark.timeout(120)
def test_many_failed_logins_from_one_address_wait(lone: Board) -> None:
    """20 failures a minute from one address; then even the right password waits. A
    made-up X-Forwarded-For is not another address (no proxy is trusted)."""
    with httpx.Client(base_url=lone.url, timeout=30) as client:
        page = client.get("/login")
        token = csrf_of(page.text)
        for attempt in range(20):
            answer = client.post("/login", headers={"X-Forwarded-For": f"198.51.100.{attempt}"},
                                 data={"name": "ada", "password": f"guess-{attempt}",
                                       "next": "/", "csrf": token})  # fmt: skip
            assert answer.status_code == 401, (attempt, answer.status_code)
        for headers in ({}, {"X-Forwarded-For": "198.51.100.99"}):
            answer = client.post("/login", headers=headers, data={
                "name": "ada", "password": PASSWORD, "next": "/", "csrf": token})  # fmt: skip
            assert answer.status_code == 429, answer.text[:300]
            assert "Too many failed logins" in _problem(answer.text)
            assert "offload_session" not in client.cookies


@pytest.mark.timeout(120)
def test_failed_logins_are_counted_per_address_behind_a_trusted_proxy(proxied: Board) -> None:
    with httpx.Client(base_url=proxied.url, timeout=30) as client:
        guesser = {"X-Forwarded-For": "203.0.113.7"}
        for attempt in range(20):
            answer = _try_login(client, "ada", f"guess-{attempt}", guesser)
            assert answer.status_code == 401, (attempt, answer.status_code)
        assert _try_login(client, "ada", PASSWORD, guesser).status_code == 429
        assert "offload_session" not in client.cookies
        answer = _try_login(client, "ada", PASSWORD, {"X-Forwarded-For": "203.0.113.8"})
        assert answer.status_code == 303  # someone else, elsewhere, logs in


def test_a_disabled_users_session_ends_at_once(board: Board) -> None:
    name = _label("dora")
    board.run(lambda app: app.admin.create_user(name=name, owner="ops", role="operator",
                                                password=PASSWORD))  # fmt: skip
    job = _later(board, "alice", _label("disabled"))
    dora = board.login(name)
    assert dora.get("/jobs").status_code == 200
    board.run(lambda app: app.admin.disable_user(name))
    _to_login(dora.get("/jobs"), "/jobs")
    _to_login(dora.get(f"/jobs/{job}"), f"/jobs/{job}")
    answer = dora.post(f"/jobs/{job}/cancel")  # the token is still valid; the session is not
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert _state(board, job) == "scheduled"
    with httpx.Client(base_url=board.url) as client:
        answer = _try_login(client, name, PASSWORD)
        assert answer.status_code == 401
        assert _problem(answer.text) == LOGIN_REFUSED


def test_a_new_password_ends_the_old_sessions(board: Board) -> None:
    name = _label("pete")
    board.run(lambda app: app.admin.create_user(name=name, owner="alice", role="submitter",
                                                password=PASSWORD))  # fmt: skip
    first, second = board.login(name), board.login(name)
    assert first.get("/").status_code == 200 and second.get("/").status_code == 200
    board.run(lambda app: app.admin.set_password(name, "a brand new password"))
    _to_login(first.get("/"), "/")
    _to_login(second.get("/batches"), "/batches")
    with httpx.Client(base_url=board.url) as client:
        assert _try_login(client, name, PASSWORD).status_code == 401
    assert board.login(name, "a brand new password").get("/").status_code == 200


def test_a_tampered_session_cookie_is_the_login_page(board: Board) -> None:
    ada, bea = board.login("ada"), board.login("bea")
    good, other = ada.cookies["offload_session"], bea.cookies["offload_session"]
    payload, stamp, signature = good.rsplit(".", 2)
    # the first character: the last one of base64 may carry only padding bits
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    forged = [
        f"{payload}.{stamp}.{flipped}",  # a changed signature
        f"{other.rsplit('.', 2)[0]}.{stamp}.{signature}",  # bea's name under ada's signature
        f"{payload}.{stamp}",  # no signature
        "WyJhZGEiLDBd",  # ["ada",0], unsigned
        good + "x",
        "a" * 600,
        "",
    ]
    for value in forged:
        with httpx.Client(base_url=board.url, cookies={"offload_session": value}) as client:
            _to_login(client.get("/workers"), "/workers")
    with httpx.Client(base_url=board.url, cookies={"offload_session": good}) as client:
        assert client.get("/workers").status_code == 200  # the real one, for contrast


def test_logout_ends_the_session(board: Board) -> None:
    otto = board.login("otto")
    answer = otto.post("/logout")
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert "offload_session" not in otto.cookies
    _to_login(otto.get("/"), "/")


def test_a_session_copied_before_logout_is_refused_after_it(board: Board) -> None:
    otto = board.login("otto")
    copied = otto.cookies["offload_session"]
    assert otto.post("/logout").status_code == 303
    with httpx.Client(base_url=board.url, cookies={"offload_session": copied}) as thief:
        _to_login(thief.get("/workers"), "/workers")


def test_a_notice_in_a_link_made_elsewhere_is_not_shown(board: Board) -> None:
    """The line that says what was just done comes from the dashboard's own actions: a
    link cannot put its words there ("session expired, log in at evil.example")."""
    job = _later(board, "alice", _label("notice"))
    ada = board.login("ada")
    spoof = "Your session expired: log in again at https://evil.example"
    for path in ("/jobs", f"/jobs/{job}", "/"):
        page = ada.get(path, params={"done": spoof})
        assert page.status_code == 200
        assert "evil.example" not in page.text and _notice(page.text) == ""
    answer = ada.post(f"/jobs/{job}/cancel")
    assert answer.status_code == 303
    assert _notice(ada.get(answer.headers["location"]).text) == "Job cancelled."


# ---------------------------------------------------------------------------------------
# 6. roles


def test_a_viewer_cannot_act(board: Board, resume_slow: None) -> None:
    job = _later(board, "alice", _label("viewer"))
    vic = board.login("vic")
    assert vic.get(f"/jobs/{job}").status_code == 200  # vic may look at alice's job
    for verb in ("cancel", "delete", "retry"):
        answer = vic.post(f"/jobs/{job}/{verb}")
        assert answer.status_code == 403, (verb, answer.status_code)
        assert "look but not act" in _problem(answer.text)
    label_query = {"task": "flaky", "state": "scheduled"}
    assert vic.get("/bulk/cancel", params=label_query).status_code == 403
    assert vic.post("/bulk/cancel", data={**label_query, "expected": "1000"}).status_code == 403
    # a queue is everyone's: not even there for a viewer
    path, fields = _queue_form(board)
    assert vic.post(path, data=fields).status_code == 404
    assert _state(board, job) == "scheduled"
    assert not _paused(board, "slow")


@pytest.mark.parametrize("name", ["vic", "sam", "bea"])
def test_staff_pages_are_not_there_for_submitters_and_viewers(board: Board, name: str) -> None:
    pause, fields = _queue_form(board)
    client = board.login(name)
    for path in ("/workers", "/schedules", "/charts.json"):
        answer = client.get(path)
        assert answer.status_code == 404, (path, answer.status_code)
        assert "text/html" in answer.headers["content-type"]
    assert client.post(pause, data=fields).status_code == 404
    assert not _paused(board, "slow")


def test_a_submitter_cannot_reach_another_owners_job(board: Board) -> None:
    label = _label("alices")
    (board.allow_dir / f"{label}.ok").write_text("fine")
    done = board.run(lambda app: app.tasks["flaky"].options(owner="alice").enqueue(label).id)
    waiting = _later(board, "alice", _label("alices-waiting"))
    batch = board.run(lambda app: app.batch(
        [app.tasks["sleepy"].options(owner="alice", delay=3600).s(0.01)]).id)  # fmt: skip
    _wait_state(board, done, ("succeeded",))
    sam, bea = board.login("sam"), board.login("bea")
    # alice's own submitter sees it all: the paths below exist
    assert sam.get(f"/jobs/{done}").status_code == 200
    assert sam.get(f"/jobs/{done}/files/report.txt").text == f"report for {label}\n"
    assert sam.get(f"/batches/{batch}").status_code == 200
    download = sam.get(f"/jobs/{done}/files/report.txt")
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert download.headers["x-content-type-options"] == "nosniff"
    for name in ("%2E%2E", "%2E", ".report.txt", "report.txt%00"):  # no way out of the folder
        odd = sam.get(httpx.URL(f"{board.url}/jobs/{done}/files/{name}"))
        assert odd.status_code in (400, 404), (name, odd.status_code)
        assert _problem(odd.text)
    for path in (f"/jobs/{done}", f"/jobs/{waiting}", f"/jobs/{done}/files/report.txt",
                 f"/batches/{batch}", f"/live?job={waiting}", f"/live?batch={batch}"):  # fmt: skip
        answer = bea.get(path)
        assert answer.status_code == 404, (path, answer.status_code)
        assert label not in answer.text
    for verb in ("cancel", "delete"):
        assert bea.post(f"/jobs/{waiting}/{verb}").status_code == 404
    assert bea.post(f"/jobs/{done}/retry").status_code == 404
    assert _state(board, waiting) == "scheduled"
    assert _state(board, done) == "succeeded"


def test_a_submitter_searches_their_own_jobs_only(board: Board) -> None:
    alices = _later(board, "alice", _label("search-alice"))
    bobs = _later(board, "bob", _label("search-bob"))
    bea = board.login("bea")
    page = bea.get("/jobs", params={"owner": "alice"})
    assert page.status_code == 200
    assert "your own jobs only" in _problem(page.text)
    assert alices not in page.text
    listed = bea.get("/jobs").text
    assert f"/jobs/{bobs}" in listed and f"/jobs/{alices}" not in listed
    # a later owner= of the same name does not slip past either
    twice = bea.get("/jobs?owner=bob&owner=alice")
    assert f"/jobs/{alices}" not in twice.text


def test_a_submitters_bulk_cancel_leaves_other_owners_jobs_alone(board: Board) -> None:
    alices = [_later(board, "alice", "", task="sleepy") for _ in range(3)]
    bobs = [_later(board, "bob", "", task="sleepy") for _ in range(2)]
    expected = board.run(lambda app: app.admin.count(action="cancel", owner="bob",
                                                     task="sleepy", state="scheduled"))  # fmt: skip
    assert expected >= 2
    bea = board.login("bea")
    search = {"task": "sleepy", "state": "scheduled"}
    confirm = bea.get("/bulk/cancel", params=search)
    assert confirm.status_code == 200
    assert f"Cancel {expected} jobs?" in confirm.text
    refused = bea.post("/bulk/cancel", data={**search, "owner": "alice", "expected": "3"})
    assert refused.status_code == 400
    assert "your own jobs only" in _problem(refused.text)
    assert {_state(board, j) for j in alices + bobs} == {"scheduled"}
    answer = bea.post("/bulk/cancel", data={**search, "expected": str(expected)})
    assert answer.status_code == 303
    assert f"{expected} jobs cancelled." in _notice(bea.get(answer.headers["location"]).text)
    assert {_state(board, j) for j in bobs} == {"cancelled"}
    assert {_state(board, j) for j in alices} == {"scheduled"}


# ---------------------------------------------------------------------------------------
# 7. bulk actions


def test_bulk_cancel_does_what_was_confirmed_and_no_more(board: Board) -> None:
    chosen = [_later(board, "alice", "", task="sleepy") for _ in range(4)]
    kept = _later(board, "alice", _label("bulk-kept"))  # flaky, also scheduled: not matched
    otto = board.login("otto")
    search = {"task": "sleepy", "state": "scheduled"}
    count = board.run(lambda app: app.admin.count(action="cancel", **search))
    assert count >= 4
    confirm = otto.get("/bulk/cancel", params=search)
    assert confirm.status_code == 200
    assert f"Cancel {count} jobs?" in confirm.text
    assert f'name="expected" value="{count}"' in confirm.text
    stale = otto.post("/bulk/cancel", data={**search, "expected": str(count - 1)})
    assert stale.status_code == 409
    assert "text/html" in stale.headers["content-type"] and _problem(stale.text)
    assert {_state(board, j) for j in chosen} == {"scheduled"}
    assert board.run(lambda app: app.admin.count(action="cancel", **search)) == count
    for expected in ("", "-1", "two", "1e3"):
        lost = otto.post("/bulk/cancel", data={**search, "expected": expected})
        assert lost.status_code == 400, expected
        assert "lost its count" in _problem(lost.text)
    answer = otto.post("/bulk/cancel", data={**search, "expected": str(count)})
    assert answer.status_code == 303
    assert f"{count} jobs cancelled." in _notice(otto.get(answer.headers["location"]).text)
    assert {_state(board, j) for j in chosen} == {"cancelled"}
    assert _state(board, kept) == "scheduled"
    assert board.run(lambda app: app.admin.count(action="cancel", **search)) == 0


def test_an_unknown_bulk_verb_is_not_found(board: Board) -> None:
    job = _later(board, "alice", _label("verb"))
    ada = board.login("ada")
    assert ada.get("/bulk/explode?task=flaky").status_code == 404
    assert ada.post("/bulk/explode", data={"task": "flaky", "expected": "1"}).status_code == 404
    assert ada.post(f"/jobs/{job}/explode").status_code == 404
    assert ada.post("/queues/explode", data={"queue": "slow"}).status_code == 404
    assert ada.post("/queues/slow/explode").status_code == 404
    assert _state(board, job) == "scheduled"


# ---------------------------------------------------------------------------------------
# 8. nonsense in, a message out


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/jobs?state=bogus", 200, "unknown state"),
        ("/jobs?after=notatime", 200, "created after"),
        ("/jobs?before=2026-13-45T25:61", 200, "created before"),
        ("/jobs?text=" + "x" * 10_000, 200, "limited to 200 characters"),
        ("/jobs?task=flaky&text=a%00b", 200, "printable"),
        ("/jobs?text=a%00b", 200, "printable"),
        ("/jobs?order=sideways", 200, "order"),
        ("/jobs?task=%00", 200, "task"),
        ("/jobs?cursor=garbage", 200, "cursor"),
        ("/jobs?cursor=" + "%FF" * 50, 200, "cursor"),
        ("/jobs?owner=" + "o" * 300, 200, "limited to 200 characters"),
        ("/?span=year", 400, "span"),
        ("/charts.json?span=year", 400, "span"),
        ("/jobs/%00", 400, "job id"),
        ("/jobs/" + "j" * 300, 400, "job id"),
        ("/jobs/no-such-job", 404, "not found"),
        ("/batches/no-such-batch", 404, "not found"),
        ("/live?job=no-such-job", 404, "not found"),
        ("/bulk/cancel?state=bogus", 400, "unknown state"),
        ("/bulk/cancel?after=yesterday", 400, "created after"),
    ],
)
def test_nonsense_in_a_query_is_a_readable_message(board: Board, path: str, status: int,
                                                   says: str) -> None:  # fmt: skip
    answer = board.login("ada").get(path)
    assert answer.status_code == status, (answer.status_code, answer.text[:500])
    assert answer.headers["content-type"].startswith("text/html")
    assert says in _problem(answer.text)
    _assert_hardened(answer)


def test_an_unknown_address_is_a_page_for_people_and_json_for_the_api(board: Board) -> None:
    ada = board.login("ada")
    page = ada.get("/no/such/page", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Not found" in page.text and "no page at this address" in _problem(page.text)
    _assert_hardened(page)
    for path in ("/api/v1/no/such/thing", "/static/no-such-file.js"):
        answer = ada.get(path, headers={"Accept": "text/html"})
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json() == {"detail": "Not Found"}
    # the API wants a token: a dashboard session is not one
    assert ada.get("/api/v1/jobs").status_code == 401
    job = _later(board, "alice", _label("api"))
    assert ada.post(f"/api/v1/jobs/{job}/cancel").status_code == 401
    assert _state(board, job) == "scheduled"


def test_an_oversized_form_is_refused_with_nothing_done(board: Board) -> None:
    job = _later(board, "alice", _label("oversized"))
    ada = board.login("ada")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    many = "&".join(f"f{i}=1" for i in range(200)) + f"&csrf={_token(ada)}"
    answer = ada.post(f"/jobs/{job}/cancel", content=many, headers=form)
    assert answer.status_code == 400 and _problem(answer.text)
    with _bare(ada) as bare:
        answer = bare.post(f"/jobs/{job}/cancel", content=b"\xff\xfe=\x00&f=\xff", headers=form)
    assert answer.status_code == 403  # undecodable bytes: no token in them
    answer = ada.post(f"/jobs/{job}/cancel", content=b"x" * (2 * 1024 * 1024), headers=form)
    assert answer.status_code == 413
    assert _state(board, job) == "scheduled"


# ---------------------------------------------------------------------------------------
# 9. the live feed


def _events(response: httpx.Response, within_s: float = 30) -> Iterator[str]:
    """The event names of a stream, as they arrive (comments and ``retry`` skipped); each
    must come within ``within_s`` (keep-alive comments end every wait of 15 s)."""
    deadline = time.monotonic() + within_s
    for line in response.iter_lines():
        assert time.monotonic() < deadline, "no event came"
        if line.startswith("event:"):
            yield line.partition(":")[2].strip()
            deadline = time.monotonic() + within_s


@pytest.mark.timeout(120)
def test_the_live_feed_says_changed_when_a_job_changes(board: Board) -> None:
    job = _later(board, "alice", _label("live"))
    ada = board.login("ada")
    timeout = httpx.Timeout(10, read=30)  # a keep-alive comes every 15 s
    with ada.stream("GET", f"/live?job={job}", timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response)
        assert next(events) == "changed"  # once listening: the page reads again
        board.run(lambda app: app.admin.cancel(job))
        assert next(events) == "changed"
    with ada.stream("GET", "/live", timeout=timeout) as response:  # everything ada sees
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response)
        assert next(events) == "changed"
        _later(board, "bob", _label("live-all"))
        assert next(events) == "changed"


@pytest.mark.timeout(120)
def test_one_user_cannot_open_live_feeds_without_end(board: Board) -> None:
    otto = board.login("otto")
    opened: list[Any] = []
    try:
        for _ in range(10):  # MAX_STREAMS_PER_CALLER
            stream = otto.stream("GET", "/live", timeout=httpx.Timeout(10, read=30))
            response = stream.__enter__()
            opened.append(stream)
            assert response.status_code == 200
            lines = response.iter_lines()
            next(lines)  # the stream has begun, and is counted
            opened.append(lines)  # kept: a dropped iterator closes its connection
        refused = otto.get("/live")
        assert refused.status_code == 429
        assert "too many open live pages" in _problem(refused.text)
    finally:
        for item in reversed(opened):
            if not isinstance(item, Iterator):
                item.__exit__(None, None, None)
    deadline = time.monotonic() + 30  # the server notices the closed ones shortly
    while True:
        with otto.stream("GET", "/live", timeout=10) as response:
            if response.status_code == 200:
                break
        assert time.monotonic() < deadline, "the closed feeds were never counted out"
        time.sleep(0.2)


def test_the_live_feed_of_another_owners_job_is_not_found(board: Board) -> None:
    alices = _later(board, "alice", _label("live-other"))
    answer = board.login("bea").get(f"/live?job={alices}")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")


# ---------------------------------------------------------------------------------------
# 10. secrets


def test_a_secret_argument_is_never_shown(board: Board) -> None:
    key = "sk-" + uuid.uuid4().hex
    job = board.run(lambda app: app.tasks["call_api"].options(owner="alice")
                    .enqueue("https://api.example/", api_key=key).id)  # fmt: skip
    _wait_state(board, job, ("succeeded", "dead"))
    ada, sam = board.login("ada"), board.login("sam")
    for client in (ada, sam):
        page = client.get(f"/jobs/{job}")
        assert page.status_code == 200
        assert "https://api.example/" in page.text  # the page shows the arguments...
        assert "[redacted]" in page.text
        assert key not in page.text and key[3:] not in page.text  # ...but not this one
        fragment = client.get(f"/jobs/{job}", headers={"HX-Request": "true"})
        assert fragment.status_code == 200 and key not in fragment.text
        for path in ("/", "/jobs", "/jobs?task=call_api", "/batches"):
            assert key not in client.get(path).text, path
        # nor can it be spelled out by searching, one guessed character at a time: the
        # search finds the job by its id, never by the secret
        by_id = client.get("/jobs", params={"task": "call_api", "text": job[-12:]})
        assert f"/jobs/{job}" in by_id.text
        for params in ({"task": "call_api", "text": key[:8]}, {"text": key[:8]},
                       {"text": key}, {"text": key[3:]}):  # fmt: skip
            found = client.get("/jobs", params=params)
            assert found.status_code == 200 and 'class="problem"' not in found.text, params
            assert f"/jobs/{job}" not in found.text, params
            count = client.get("/bulk/delete", params=params)
            assert "Delete 0 jobs?" in count.text, params

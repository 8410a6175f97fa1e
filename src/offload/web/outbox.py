"""The development outbox: ``offload serve --dev-smtp`` runs a mail server (``aiosmtpd``)
in the server process and shows what it received at ``/dev/outbox``, links working, so
a newcomer sees the e-mails without a mail server of their own. For a laptop only: the
page needs no token, and it keeps the last ``KEPT`` messages in memory.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from collections import deque
from email.message import EmailMessage
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

KEPT = 100
_LINK = re.compile(r"https?://[^\s<>\"']+")
_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


class Outbox:
    """Received messages, newest first; ``start`` binds the SMTP port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8025) -> None:
        self.host, self.port = host, port
        self.messages: deque[EmailMessage] = deque(maxlen=KEPT)
        self._controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.appendleft(parsed)
        return "250 kept in the development outbox"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def _text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    return "" if part is None else str(part.get_content())


def _linked(text: str) -> str:
    """The text escaped, its links made links."""
    out, last = [], 0
    for match in _LINK.finditer(text):
        out.append(html.escape(text[last : match.start()]))
        url = html.escape(match.group(0), quote=True)
        out.append(f'<a href="{url}" rel="noreferrer">{url}</a>')
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def page(outbox: Outbox) -> str:
    items = []
    for message in outbox.messages:
        head = " · ".join(html.escape(str(message[h] or "")) for h in ("Date", "To"))
        items.append(
            f"<article><h2>{html.escape(str(message['Subject'] or '(no subject)'))}</h2>"
            f"<p>{head}</p><pre>{_linked(_text(message))}</pre></article>"
        )
    body = "".join(items) or "<p>No mail yet.</p>"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>offload: development outbox</title></head><body><h1>Development outbox</h1>"
        f"<p>Mail sent to {html.escape(outbox.host)}:{outbox.port}, newest first "
        f"(the last {KEPT}).</p>{body}</body></html>"
    )


router = APIRouter(include_in_schema=False)


@router.get("/dev/outbox", response_class=HTMLResponse)
async def outbox_page(request: Request) -> HTMLResponse:
    outbox: Outbox = request.app.state.outbox
    return HTMLResponse(page(outbox), headers={"Content-Security-Policy": _CSP,
                                               "X-Content-Type-Options": "nosniff"})  # fmt: skip

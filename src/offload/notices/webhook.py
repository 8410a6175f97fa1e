"""One webhook delivery, signed per Standard Webhooks (``standardwebhooks``): a stable
``webhook-id`` (the notice job's own id, the same on every retry), the time, and one
signature per secret (two while a secret is being rotated). Only a 2xx delivers; 410
stops for good; 429 and 503 are retried after their ``Retry-After``; redirects are not
followed; the request goes to the address that was checked, within 10 s.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from offload.errors import Abort, Retry
from offload.notices.addresses import Network, checked_address

TIMEOUT_S = 10.0
#: The longest ``Retry-After`` honoured (a day); longer waits go by the schedule.
MAX_RETRY_AFTER_S = 24 * 3600.0
USER_AGENT = "offload-webhooks"


def signatures(secrets: list[str], msg_id: str, at: datetime, body: str) -> str:
    from standardwebhooks.webhooks import Webhook as Signer

    if not secrets:
        raise Abort("no webhook secret is set: give Offload(webhook_secrets=...) or "
                    "$OFFLOAD_WEBHOOK_SECRET (whsec_...)")  # fmt: skip
    return " ".join(Signer(secret).sign(msg_id, at, body) for secret in secrets)


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        delay_s = float(value)
    except ValueError:
        try:
            delay_s = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(delay_s, 0.0), MAX_RETRY_AFTER_S)


async def deliver(
    url: str, event: dict[str, Any], msg_id: str, secrets: list[str], allow: list[Network]
) -> int:
    """POST ``event``; the status on success, else raises (``Retry``, ``Abort``, or an
    error the notice's retries take care of)."""
    import httpx

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = await checked_address(host, port, allow)
    at = datetime.now(UTC).replace(microsecond=0)
    body = json.dumps(event, separators=(",", ":"), sort_keys=True)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": parts.netloc,
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures(secrets, msg_id, at, body),
    }
    literal = f"[{address}]" if ":" in address else address
    target = urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
    async with httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False,
                                 trust_env=False) as client:  # fmt: skip
        request = client.build_request(
            "POST", target, content=body.encode(), headers=headers,
            extensions={"sni_hostname": host} if parts.scheme == "https" else {},
        )  # fmt: skip
        response = await client.send(request, stream=True)  # the body is never read
        await response.aclose()
    status = response.status_code
    if 200 <= status < 300:
        return status
    if status == 410:
        raise Abort(f"{url} answered 410 Gone: the endpoint is no more; not retried")
    if status in (429, 503):
        raise Retry(f"{url} answered {status}", delay_s=_retry_after_s(
            response.headers.get("retry-after")))  # fmt: skip
    where = f" (to {response.headers.get('location')})" if 300 <= status < 400 else ""
    raise RuntimeError(f"{url} answered {status}{where}; only a 2xx delivers")

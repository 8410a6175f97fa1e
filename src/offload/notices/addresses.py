"""Where a webhook may go: never to this machine, a private network, a link-local or
cloud-metadata address, multicast or anything not globally routable, unless the
address is in the allow-list (``$OFFLOAD_WEBHOOK_ALLOW``: CIDRs, comma-separated).

The check is on the addresses the name resolves to, every one of them, and the
request then goes to the checked address itself (the name rides in the Host header
and TLS's SNI): a name that resolves elsewhere between check and connect, or a
number written in decimal or octal, gets no further than its resolution.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Iterable

from offload.errors import Abort

ALLOW_ENV = "OFFLOAD_WEBHOOK_ALLOW"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(Abort):
    """The webhook's address is not one a notice may be sent to (not retried)."""


def allow_list(raw: str | None = None) -> list[Network]:
    text = os.environ.get(ALLOW_ENV, "") if raw is None else raw
    nets = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            nets.append(ipaddress.ip_network(item, strict=False))
    return nets


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: Refused whatever ``is_global`` says on this Python version (it has changed between
#: versions): cloud metadata and special-purpose ranges, IPv4-compatible, local NAT64
#: and site-local IPv6.
_BLOCKED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "::/96", "64:ff9b:1::/48",
    "fec0::/10", "2001:db8::/32", "100::/64",
)]  # fmt: skip


def _plain(address: Address) -> Address:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), or itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        for embedded in (address.ipv4_mapped, address.sixtofour):
            if embedded is not None:
                return embedded
        if address.teredo is not None:
            return address.teredo[1]
    return address


def permitted(address: Address, allow: Iterable[Network] = ()) -> bool:
    """Whether a notice may go to ``address``."""
    if any(address in net for net in allow):
        return True
    plain = _plain(address)
    if any(plain in net for net in allow):
        return True
    if any(a in net for a in (address, plain) for net in _BLOCKED if a.version == net.version):
        return False
    return plain.is_global and not plain.is_multicast and not address.is_multicast


async def checked_address(host: str, port: int, allow: Iterable[Network] = ()) -> str:
    """The address to connect to for ``host`` (``Refused`` if any it resolves to may not
    be reached; a name that does not resolve is an error worth a retry)."""
    nets = list(allow)
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host!r}: {exc.strerror}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    refused = [a for a in addresses if not permitted(a, nets)]
    if refused or not addresses:
        raise Refused(
            f"webhook host {host!r} resolves to {refused[0] if refused else 'nothing'}, "
            f"which notices may not reach (private, local or not routable); allow it with "
            f"{ALLOW_ENV}"
        )
    return str(addresses[0])

"""Who the client is: the peer's address, or behind a trusted reverse proxy the address
that proxy saw, from ``X-Forwarded-For``.

Behind a reverse proxy every request comes from the proxy's address, so the failed-
attempt limiter would count everyone together. ``X-Forwarded-For`` names the real client,
but any client can send one: it is honoured only when the peer is one of ``[web]
trusted-proxies``, and then read from the right (each proxy appends the address it saw),
skipping trusted proxies, up to the first hop that is not one: the *rightmost untrusted*
address, the leftmost one a trusted proxy vouches for. What lies left of it was written
by the client and is never used. Pure functions, apart from ``client_address``, which
reads a Twisted request.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Optional, Sequence, Union

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

#: The ``[web] trusted-proxies`` networks (config.py parses them; empty: trust none).
TrustedProxies = Sequence[IPNetwork]

_HOST_PORT_RE = re.compile(r"\[([^\]]+)\](?::\d+)?|([0-9.]+):\d+")
#: Hops read from the right at most: a longer chain is not a real proxy chain.
MAX_HOPS = 32


def parse_ip(text: str) -> Optional[IPAddress]:
    """The address in an ``X-Forwarded-For`` hop or a peer's host: ``1.2.3.4``,
    ``1.2.3.4:port``, ``2001:db8::1``, ``[2001:db8::1]:port``; IPv4-mapped IPv6 as IPv4;
    None for anything else (``unknown``, a name, an obfuscated RFC 7239 identifier)."""
    text = text.strip()
    m = _HOST_PORT_RE.fullmatch(text)
    if m:
        text = m.group(1) or m.group(2)
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: Optional[IPAddress], trusted: TrustedProxies) -> bool:
    return ip is not None and any(ip.version == net.version and ip in net for net in trusted)


def is_trusted(host: str, trusted: TrustedProxies) -> bool:
    """Whether the address ``host`` (a peer's) is one of the ``trusted`` proxies."""
    return _trusted(parse_ip(host), trusted)


def forwarded_client(peer: str, forwarded: Sequence[str], trusted: TrustedProxies) -> str:
    """The client's address: ``peer`` unless it is a trusted proxy; then the rightmost
    hop of the ``X-Forwarded-For`` header lines ``forwarded`` (in order) that is not a
    trusted proxy. A hop that is not an address ends the walk at the last trusted one,
    and so does a chain of trusted proxies only."""
    current = parse_ip(peer)
    if not _trusted(current, trusted):
        return peer
    hops = [hop for line in forwarded for hop in line.split(",") if hop.strip()]
    for hop in reversed(hops[-MAX_HOPS:]):
        ip = parse_ip(hop)
        if ip is None:
            break
        current = ip
        if not _trusted(ip, trusted):
            break
    return str(current)


def client_address(request: Any, trusted: TrustedProxies) -> str:
    """The client address of a Twisted ``request`` (see ``forwarded_client``); the
    peer's address when no proxy is trusted."""
    peer = request.getClientAddress().host
    if not trusted:
        return peer
    lines = request.requestHeaders.getRawHeaders(b"x-forwarded-for") or []
    return forwarded_client(peer, [line.decode("latin-1") for line in lines], trusted)

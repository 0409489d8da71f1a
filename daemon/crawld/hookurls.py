"""Webhook URLs: what a valid one is, how it is shown, and which per-job ones are allowed.

Pure functions over text, shared by the configuration (``[webhooks] url``), the API's
``webhook=`` parameter and the webhooks service. A webhook URL may carry a token in its
path or query (Slack-style ``/services/T0/B0/XXXX``, ``?token=...``), so it is never
logged or shown whole: ``redact`` keeps only the scheme, host and port.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Union
from urllib.parse import urlsplit

#: The longest webhook URL accepted (bytes of text), the API's and the config's alike.
MAX_URL = 2048

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def check_url(text: str) -> str:
    """``text`` if it is an http or https URL crawld can POST to; else ValueError saying
    why. No credentials in it (user:pass@), no fragment, no spaces or control
    characters, a host, a port from 1 to 65535, at most MAX_URL characters."""
    url = text.strip()
    if not url:
        raise ValueError("is empty")
    if len(url) > MAX_URL:
        raise ValueError(f"is longer than {MAX_URL} characters")
    if not url.isascii() or re.search(r"[\x00-\x20\x7f\\]", url):
        raise ValueError("must be ASCII without spaces, backslashes or control "
                         "characters (percent-encode the rest)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"is not a URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("has no host")
    if "@" in parts.netloc:
        raise ValueError("must not hold credentials (user:password@); put a token in "
                         "the path or query, or use [webhooks] secret to sign")
    if parts.fragment or url.endswith("#"):
        raise ValueError("must not have a #fragment")
    if port == 0:
        raise ValueError("has port 0")
    return url


def host_of(url: str) -> str:
    """The URL's host, lower case, without brackets (an IPv6 literal as its text)."""
    return (urlsplit(url).hostname or "").lower().rstrip(".")


def redact(url: str) -> str:
    """The URL as logs and the API show it: scheme, host and port only, and ``/…`` when
    it has more (a path or query may be a secret)."""
    try:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
    except ValueError:
        return "(an invalid URL)"
    rest = url[len(origin):]
    return origin + ("/…" if rest not in ("", "/") else rest)


@dataclass(frozen=True)
class HostPolicy:
    """Which per-job webhook URLs (``webhook=`` on schedule-job) are allowed.

    ``allowed`` False refuses every per-job URL. Otherwise, with no ``names`` and no
    ``networks`` any host is allowed; with some, the URL's host must be one of the
    names, end with a ``.suffix`` given as ``*.example.com``, or be an IP literal in one
    of the networks. Names are compared as written, not resolved: a listed name is
    trusted with whatever address it has.
    """

    allowed: bool = True
    names: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    @classmethod
    def of(cls, allowed: bool, hosts: tuple[Union[str, Network], ...]) -> "HostPolicy":
        """The policy of ``allow-job-urls`` and ``job-url-hosts`` (``parse_hosts``)."""
        return cls(allowed, tuple(h for h in hosts if isinstance(h, str)),
                   tuple(h for h in hosts if not isinstance(h, str)))

    def refusal(self, url: str) -> str:
        """Why ``url`` may not be a job's webhook, or "" when it may."""
        if not self.allowed:
            return "per-job webhooks are off on this server ([webhooks] allow-job-urls = no)"
        if not self.names and not self.networks:
            return ""
        host = host_of(url)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            if any(address in network for network in self.networks):
                return ""
        elif any(host == name or (name.startswith("*.") and host.endswith(name[1:]))
                 for name in self.names):
            return ""
        return (f"host {host!r} is not one of [webhooks] job-url-hosts "
                "(the hosts per-job webhooks may be sent to)")


def parse_hosts(text: str) -> tuple[Union[str, Network], ...]:
    """``[webhooks] job-url-hosts``: host names, ``*.suffix`` patterns, IP addresses and
    networks (CIDR), separated by commas or spaces; ValueError for anything else."""
    names: list[str] = []
    networks: list[Network] = []
    for item in (t for t in re.split(r"[,\s]+", text.strip().lower()) if t):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
            continue
        except ValueError:
            pass
        name = item.rstrip(".")
        bare = name[2:] if name.startswith("*.") else name
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*",
                            bare):
            raise ValueError(f"{item!r} is not a host name, *.suffix, IP address or network")
        names.append(name)
    return (*names, *networks)

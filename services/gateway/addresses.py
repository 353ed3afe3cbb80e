"""A client's address for per-address limits: the peer, or behind a trusted proxy the ``X-Forwarded-For`` hop."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from shared.errors import invalid_setting

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str], setting: str = "GATEWAY_TRUSTED_PROXIES") -> tuple[Network, ...]:
    """Addresses or CIDR blocks (``10.0.0.0/8``, ``::1``); a bad one stops the gateway naming ``setting``."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            raise invalid_setting(setting, entry, "expected an IP address or CIDR block") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientAddresses:
    """The address a connection counts against: the TCP peer; when the peer is one of ``GATEWAY_TRUSTED_PROXIES``,
    the nearest ``X-Forwarded-For`` hop that is not itself a trusted proxy (hops further left are whatever the
    client wrote, so they are never believed). Without trusted proxies the header is ignored."""

    def __init__(self, trusted: tuple[Network, ...] = ()) -> None:
        self.trusted = trusted

    def _trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address.version == net.version and address in net for net in self.trusted)

    def of(self, request: web.BaseRequest) -> str:
        raw = request.remote or "unknown"
        peer = _address(raw)
        if peer is None:
            return raw  # a unix socket's peer, or none
        if not self.trusted or not self._trusted(peer):
            return str(peer)
        client = peer
        for header in reversed(request.headers.getall("X-Forwarded-For", [])):
            for hop in reversed(header.split(",")):
                address = _address(hop)
                if address is None:
                    return str(client)  # a hop no proxy wrote: stop at the last one a trusted proxy vouched for
                client = address
                if not self._trusted(address):
                    return str(address)
        return str(client)

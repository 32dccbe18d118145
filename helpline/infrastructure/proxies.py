"""Believe X-Forwarded-* only from the proxies named in HELPLINE_TRUSTED_PROXIES.

Anyone can send X-Forwarded-For. When gunicorn is reached directly, a client that
believed headers would be whoever it claimed to be, and a new claim on every request
would slip past the login limits kept per client address. So the headers count only
when the connection itself comes from a trusted proxy; otherwise the socket's peer is
the client and the scheme and host are the ones the request arrived with.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

from helpline.infrastructure.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# The address the connection came from, before any forwarded header was believed.
PEER = "helpline.proxy_peer"


def parse_networks(text: str) -> tuple[Network, ...]:
    """Read a comma-separated list of addresses and CIDR networks; ConfigError if one is bad."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(
                f"HELPLINE_TRUSTED_PROXIES: {entry!r} is not an address or a network; "
                "use a comma-separated list such as 10.0.0.0/8,127.0.0.1"
            ) from None
    return tuple(networks)


class TrustedProxies(ProxyFix):
    """Werkzeug's ProxyFix, applied only to connections from trusted proxies.

    The client is the right-most X-Forwarded-For address that is not itself a trusted
    proxy (each proxy appends the address it saw), so a chain of trusted proxies is
    walked back to the first address none of them vouches for. Scheme, host and port
    are the ones the nearest proxy reports.
    """

    def __init__(self, app: Any, networks: Iterable[Network]):
        super().__init__(app, x_for=0, x_proto=1, x_host=1, x_port=1)
        self.networks = tuple(networks)
        # Every request asks about its peer, and the peers are few (the proxies, or
        # Twilio's addresses): each is parsed and matched once.
        self.trusts = functools.lru_cache(maxsize=1024)(self._trusts)

    def _trusts(self, address: str) -> bool:
        try:
            found = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(found in network for network in self.networks)

    def client(self, peer: str, forwarded_for: str) -> str:
        """Return the client's address: the first hop, from the right, not a trusted proxy."""
        client = peer
        for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # not an address: nothing further left can be believed either
            client = hop
            if not self.trusts(hop):
                break
        return client

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        peer = environ.get("REMOTE_ADDR", "")
        environ[PEER] = peer
        if not self.trusts(peer):
            return self.app(environ, start_response)
        environ["REMOTE_ADDR"] = self.client(peer, environ.get("HTTP_X_FORWARDED_FOR", ""))
        return super().__call__(environ, start_response)

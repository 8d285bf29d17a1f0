"""Rate limits on the public RPCs, per client address, at the edge (gRPC and HTTP alike).

A public RPC (access `{public: true}` in its proto: certificate verification, the register,
complaints, the decision log) is open to anyone, so one address must not be able to take the
capacity of everyone else: each (client address, RPC) has a token bucket that refills at
PUBLIC_RATE_LIMIT calls a minute and holds PUBLIC_RATE_BURST; a call finding it empty is
RESOURCE_EXHAUSTED (HTTP 429) with the seconds until a token is back (google.rpc.RetryInfo,
and Retry-After over HTTP), counted in `vocreg_rate_limited_total`. PUBLIC_RATE_LIMITS sets
other figures for some RPCs (`VerifyCertificate=30/10,ListRegister=120`: per minute / burst).

Who is limited: anonymous calls. A caller with a valid token is known and accountable (an
integrator verifying certificates for a hiring system is one address with a real need), and a
token cannot be forged to escape the limit: a bad one is refused before this. The buckets are
per edge process (each replica limits on its own: N replicas allow N times the figure);
memory is bounded by RATE_LIMIT_MAX_CLIENTS buckets, the least recently used going first (a
client forgotten that way starts again with a full bucket).

The client address is the connection's peer. Behind a proxy or load balancer (an ingress),
set RATE_LIMIT_TRUSTED_PROXIES to its networks (CIDRs): for a peer in them the address is the
right-most X-Forwarded-For entry that is not itself a trusted proxy. A client cannot spoof
the header past a trusted proxy, which appends the address it saw.
"""
from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import unquote

from services.common import config
from services.common.errors import ResourceExhausted


@dataclass(frozen=True)
class Limit:
    per_minute: float
    burst: float

    @property
    def rate(self) -> float:
        return self.per_minute / 60.0


def parse_overrides(text: str, default: Limit) -> dict[str, Limit]:
    """`Rpc=per_minute[/burst],...` as {rpc: Limit}; SystemExit naming the variable if wrong."""
    found = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, figures = item.partition("=")
        per_minute, _, burst = figures.partition("/")
        try:
            limit = Limit(float(per_minute), float(burst) if burst else default.burst)
        except ValueError:
            limit = None
        if not name.strip() or limit is None or limit.per_minute <= 0 or limit.burst < 1:
            raise SystemExit(f"configuration error: PUBLIC_RATE_LIMITS item {item!r} is not "
                             "Rpc=per_minute[/burst] with positive figures")
        found[name.strip()] = limit
    return found


def parse_networks(text: str) -> tuple:
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False)
                     for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise SystemExit(f"configuration error: RATE_LIMIT_TRUSTED_PROXIES: {exc}") from None


class RateLimitSettings:
    def __init__(self):
        per_minute = config.env_float("PUBLIC_RATE_LIMIT", 60.0)
        burst = config.env_float("PUBLIC_RATE_BURST", 20.0)
        if per_minute < 0 or burst < 1:
            raise SystemExit("configuration error: PUBLIC_RATE_LIMIT must be >= 0 (0: no "
                             "limit) and PUBLIC_RATE_BURST >= 1")
        self.enabled = per_minute > 0
        self.default = Limit(per_minute or 1.0, burst)
        self.overrides = parse_overrides(config.env("PUBLIC_RATE_LIMITS", ""), self.default)
        self.trusted_proxies = parse_networks(config.env("RATE_LIMIT_TRUSTED_PROXIES", ""))
        self.max_clients = config.env_int("RATE_LIMIT_MAX_CLIENTS", 100_000)


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def grpc_peer_address(peer: str) -> str:
    """The address in grpcio's peer string ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000"; current
    grpcio percent-encodes the brackets, "ipv6:%5B::1%5D:5000", and a zone "%25eth0")."""
    kind, _, rest = (peer or "").partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return unquote(rest.rpartition(":")[0]).strip("[]").split("%")[0]
    return peer or "unknown"


def client_address(peer: str, forwarded_for: str | None, trusted: tuple) -> str:
    """The address a call is counted against: the peer, or, when the peer is a trusted proxy,
    the right-most X-Forwarded-For entry that is not one."""
    if not trusted or not forwarded_for:
        return peer
    address = _address(peer)
    if address is None or not any(address in network for network in trusted):
        return peer
    for hop in reversed([h for h in forwarded_for.split(",") if h.strip()]):
        candidate = _address(hop)
        if candidate is None:
            return peer  # a malformed chain: count it against the proxy that sent it
        if not any(candidate in network for network in trusted):
            return str(candidate)
    return peer


class RateLimiter:
    """Token buckets by (address, rpc); thread-safe (the edge's handler threads share it)."""

    def __init__(self, settings: RateLimitSettings, clock=time.monotonic, on_limited=None):
        self.settings = settings
        self.clock = clock
        self.on_limited = on_limited  # callback(full_method) when a call is refused
        self._buckets: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def limit_for(self, rpc: str) -> Limit:
        return self.settings.overrides.get(rpc, self.settings.default)

    def check(self, address: str, rpc: str, full_method: str) -> None:
        """Take a token for this call, or raise ResourceExhausted with the wait."""
        if not self.settings.enabled:
            return
        limit = self.limit_for(rpc)
        now = self.clock()
        key = (address, rpc)
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [limit.burst, now]
                if len(self._buckets) > self.settings.max_clients:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                bucket[0] = min(limit.burst, bucket[0] + (now - bucket[1]) * limit.rate)
                bucket[1] = now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return
            wait = (1.0 - bucket[0]) / limit.rate
        if self.on_limited is not None:
            self.on_limited(full_method)
        raise ResourceExhausted(
            f"too many calls of {rpc} from this address: at most {limit.per_minute:g} a "
            f"minute (bursts of {limit.burst:g}); retry in {math.ceil(wait)} s",
            retry_after=wait, metadata={"limit_per_minute": f"{limit.per_minute:g}",
                                        "burst": f"{limit.burst:g}"})

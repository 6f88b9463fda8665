"""Client IPs: validated, normalised and keyed as the model's validator does, once per distinct address.

Every decoder (pydantic, fast JSON, batch containers) keys addresses here, through one
bounded cache. The key is the IPv4 integer (key >> 8 is the /24 prefix, for linking),
or the two IPv6 halves folded.
"""

from __future__ import annotations

import ipaddress
import socket

import numpy as np

_CACHE_MAX = 500_000
_cache: dict[str, tuple[str, int] | None] = {}


def ipv4_canonical(address: str) -> tuple[str, int] | None:
    """A canonical dotted quad in C (glibc's inet_pton: four decimal octets, no leading zeros,
    nothing else), so its text is already normalised; anything else returns None. ~30× faster
    than ipaddress, which matters when nearly every event has its own address."""
    try:
        packed = socket.inet_pton(socket.AF_INET, address)
    except (OSError, ValueError, UnicodeError):
        return None
    return address, int.from_bytes(packed, "big")


def ip_entry(address: str) -> tuple[str, int] | None:
    """(normalised text, 64-bit key) of an address, None when it is not one."""
    try:
        return _cache[address]
    except KeyError:
        pass
    found = ipv4_canonical(address)
    if found is None:  # IPv6, or not an address: the exact (slower) rule decides
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            found = None
        else:
            value = int(ip)
            found = (str(ip), value if ip.version == 4 else ((value >> 64) ^ (value & 0xFFFFFFFFFFFFFFFF)))
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()  # bounded memory; recomputing is cheap
    _cache[address] = found
    return found


def ip_key(address: str) -> int:
    """The key of an address the contract accepted (ValueError if it is not an address)."""
    found = _cache.get(address) or ip_entry(address)  # a hit without a call: once per event on some paths
    if found is None:
        raise ValueError(f"{address!r} is not an IP address")
    return found[1]


def ip_table(entries: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Normalised addresses, keys (uint64) and a bad-address mask for dictionary entries."""
    # Canonical IPv4 (nearly every entry) straight from C; the rest through the cached exact rule.
    found = [ipv4_canonical(e) or ip_entry(e) for e in entries]
    texts = [f[0] if f else e for f, e in zip(found, entries, strict=True)]
    keys = np.fromiter((f[1] if f else 0 for f in found), np.uint64, len(found))
    bad = np.fromiter((f is None for f in found), bool, len(found))
    return texts, keys, bad

"""A small synthetic internet: providers with an ASN, a network type, countries and /24s.

IPv4 first octets loosely follow where such providers announce space, so dashboards
read plausibly, but every address is synthetic; IPv6 uses 2001:db8::/32 (the
documentation prefix). Cloud providers expose only a few dozen /24s each, so
unrelated tenants land in the same /24 now and then, as they do in real clouds:
sharing a hosting /24 alone must not be proof of a fleet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    asn: int
    network_type: str
    countries: tuple[str, ...]
    blocks: tuple[tuple[int, int], ...]  # IPv4 /16s (first two octets)
    subnets: int  # /24s tenants are placed in
    ipv6: bool = False


@dataclass(frozen=True, slots=True)
class Prefix:
    provider: Provider
    country: str
    network: str  # "a.b.c" for an IPv4 /24, "2001:db8:x:y" for an IPv6 /64

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.network


@dataclass(frozen=True, slots=True)
class Address:
    ip: str
    asn: int | None  # None: the gateway's IP database has no entry
    network_type: str
    country: str | None


PROVIDERS: tuple[Provider, ...] = (
    # hosting
    Provider("aws", 16509, "hosting", ("US", "IE", "DE", "JP", "SG"), ((3, 80), (52, 14), (54, 160)), 48),
    Provider("gcp", 15169, "hosting", ("US", "NL", "BE", "TW"), ((34, 102), (35, 190)), 40),
    Provider("azure", 8075, "hosting", ("US", "NL", "IE", "GB"), ((20, 42), (40, 112)), 40),
    Provider("digitalocean", 14061, "hosting", ("US", "NL", "DE", "SG", "IN"), ((104, 131), (159, 89)), 32),
    Provider("hetzner", 24940, "hosting", ("DE", "FI"), ((5, 9), (88, 198), (116, 202)), 32),
    Provider("ovh", 16276, "hosting", ("FR", "CA", "PL"), ((51, 75), (54, 36)), 32),
    Provider("vultr", 20473, "hosting", ("US", "JP", "DE", "GB"), ((45, 76), (149, 28)), 24),
    Provider("linode", 63949, "hosting", ("US", "DE", "JP"), ((172, 105), (139, 162)), 24),
    # business
    Provider("lumen", 3356, "business", ("US", "GB"), ((4, 14), (8, 9)), 4096),
    Provider("cogent", 174, "business", ("US", "DE", "FR"), ((38, 104), (66, 28)), 4096),
    Provider("zayo", 6461, "business", ("US", "CA"), ((64, 125), (208, 185)), 4096),
    Provider("colt", 8220, "business", ("GB", "DE", "FR", "IT"), ((212, 74), (213, 86)), 4096),
    # residential
    Provider("comcast", 7922, "residential", ("US",), ((24, 6), (73, 162), (98, 207)), 65536, ipv6=True),
    Provider("charter", 20115, "residential", ("US",), ((47, 144), (71, 80)), 65536, ipv6=True),
    Provider("dtag", 3320, "residential", ("DE",), ((79, 192), (84, 160)), 65536, ipv6=True),
    Provider("bt", 2856, "residential", ("GB",), ((81, 128), (86, 140)), 65536),
    Provider("orange", 3215, "residential", ("FR",), ((90, 3), (92, 88)), 65536, ipv6=True),
    Provider("ntt", 4713, "residential", ("JP",), ((114, 160), (153, 220)), 65536, ipv6=True),
    Provider("airtel", 9498, "residential", ("IN",), ((122, 161), (182, 64)), 65536),
    Provider("vivo", 26599, "residential", ("BR",), ((177, 32), (189, 100)), 65536),
    # mobile
    Provider("tmobile", 21928, "mobile", ("US",), ((172, 56), (172, 58)), 16384, ipv6=True),
    Provider("vodafone", 3209, "mobile", ("DE",), ((109, 40), (176, 0)), 16384, ipv6=True),
    Provider("jio", 55836, "mobile", ("IN",), ((49, 36), (157, 32)), 16384, ipv6=True),
    # vpn: consumer VPN exits sit in a handful of data centres
    Provider("m247", 9009, "vpn", ("GB", "NL", "US", "RO", "SE", "CH"), ((37, 120), (89, 238)), 64),
    Provider("datacamp", 60068, "vpn", ("US", "DE", "NL", "SG", "JP", "CA"), ((138, 199), (143, 244)), 64),
    Provider("packethub", 147049, "vpn", ("US", "GB", "FR", "AU"), ((45, 134), (185, 159)), 48),
    # proxy: exits flagged by IP intelligence as open or commercial proxies
    Provider("proxy-latam", 64512, "proxy", ("BR", "AR", "MX", "CO", "CL"), ((186, 208), (191, 242)), 256),
    Provider("proxy-asia", 64513, "proxy", ("VN", "TH", "ID", "PH", "KR"), ((103, 21), (113, 160)), 256),
    Provider("proxy-eu", 64514, "proxy", ("RU", "UA", "PL", "RO", "TR", "BG"), ((5, 188), (46, 8)), 256),
    Provider("proxy-world", 64515, "proxy", ("US", "CA", "ZA", "NG", "EG"), ((23, 94), (102, 129)), 256),
    # tor exits live in a few small hosting networks
    Provider("tor-exit-a", 60729, "tor", ("DE", "NL", "SE"), ((185, 220), (192, 42)), 12),
    Provider("tor-exit-b", 53667, "tor", ("US", "FR", "CH"), ((199, 249), (204, 8)), 12),
)

BY_TYPE: dict[str, tuple[Provider, ...]] = {
    kind: tuple(p for p in PROVIDERS if p.network_type == kind)
    for kind in sorted({p.network_type for p in PROVIDERS})
}


def draw_prefixes(
    rng: np.random.Generator, network_types: Mapping[str, float], count: int, *, ipv6_share: float = 0.0,
    one_provider: bool = False,
) -> list[Prefix]:
    """``count`` distinct prefixes, each from a provider of a type drawn by weight.

    ``one_provider``: all from one provider drawn once (one ASN: a service's egress).
    """
    kinds = list(network_types)
    weights = np.array([network_types[k] for k in kinds], dtype=np.float64)
    weights /= weights.sum()
    fixed = _provider(rng, kinds, weights) if one_provider else None
    seen: set[str] = set()
    out: list[Prefix] = []
    # Bounded retries: small provider /24 pools may repeat, which is fine to give up on.
    for _ in range(count * 8):
        if len(out) == count:
            break
        provider = fixed or _provider(rng, kinds, weights)
        prefix = _prefix_in(rng, provider, ipv6=provider.ipv6 and rng.random() < ipv6_share)
        if prefix.network not in seen:
            seen.add(prefix.network)
            out.append(prefix)
    return out


def _provider(rng: np.random.Generator, kinds: list[str], weights: np.ndarray) -> Provider:
    options = BY_TYPE[kinds[int(rng.choice(len(kinds), p=weights))]]
    return options[int(rng.integers(len(options)))]


def _prefix_in(rng: np.random.Generator, provider: Provider, *, ipv6: bool) -> Prefix:
    slot = int(rng.integers(provider.subnets))
    # A provider's n-th /24 is fixed for every scenario, so tenants collide realistically.
    country = provider.countries[slot % len(provider.countries)]
    if ipv6:
        return Prefix(provider, country, f"2001:db8:{provider.asn & 0xFFFF:x}:{slot:x}")
    first, second = provider.blocks[slot % len(provider.blocks)]
    k = slot // len(provider.blocks)
    # 97 is odd, so k -> third octet is a bijection within each /16.
    return Prefix(provider, country, f"{first}.{(second + k // 256) % 256}.{(k * 97 + provider.asn) % 256}")


def draw_addresses(
    rng: np.random.Generator, prefixes: list[Prefix], count: int, *, unknown_share: float = 0.0
) -> list[Address]:
    """``count`` distinct host addresses spread over ``prefixes`` (at least one per prefix)."""
    out: list[Address] = []
    seen: set[str] = set()
    for i in range(count * 8):
        if len(out) == count:
            break
        # First one address in every prefix, then anywhere.
        prefix = prefixes[i] if i < len(prefixes) else prefixes[int(rng.integers(len(prefixes)))]
        if prefix.is_ipv6:
            host = int(rng.integers(1, 2**32))
            # Canonical text form: the contract's validator normalises addresses.
            ip = str(ipaddress.IPv6Address(f"{prefix.network}::{host >> 16:x}:{host & 0xFFFF:x}"))
        else:
            ip = f"{prefix.network}.{int(rng.integers(2, 255))}"
        if ip in seen:
            continue
        seen.add(ip)
        known = rng.random() >= unknown_share
        out.append(
            Address(
                ip=ip,
                asn=prefix.provider.asn if known else None,
                network_type=prefix.provider.network_type if known else "unknown",
                country=prefix.country if known else None,
            )
        )
    return out


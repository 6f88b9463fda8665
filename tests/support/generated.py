"""Measures of generated traffic shared by the loadgen tests."""

from __future__ import annotations

import ipaddress

import numpy as np

from jobs.loadgen import GeneratedEvent


def near_duplicate_share(evs: list[GeneratedEvent], max_bits: int = 8) -> float:
    """Share of the first 400 events whose prompt SimHash lies within ``max_bits`` of another one's."""
    hashes = np.array([int(e["prompt_simhash"], 16) for e in evs[:400]], dtype=np.uint64)
    distance = np.bitwise_count(hashes[:, None] ^ hashes[None, :]).astype(np.int64)
    np.fill_diagonal(distance, 64)
    return float(np.mean(distance.min(axis=1) <= max_bits))


def slash24(ip: str) -> str:
    """The /24 of an IPv4 address (the /64 of an IPv6 one): the unit fleets share."""
    if ":" in ip:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False).network_address)
    return ip.rsplit(".", 1)[0]

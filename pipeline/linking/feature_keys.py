"""Link features by number: per event and kind a 64-bit value key, names only on demand.

A batch's (feature, account) pairs are found, deduplicated and checked against ``SentPairs`` on these
keys, without a feature string per event; names (``pay:…``, ``ip24:…``) are built only for the pairs
that will be sent (``feature_names``). String keys are Python's string hash: stable within one
process, which is all the in-memory pair table needs. Keys per kind: docs/linking.md, "Topology".
"""

from __future__ import annotations

import functools
import ipaddress
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.hashing import blake2b64

KIND_PAY, KIND_IP, KIND_ASN, KIND_UA, KIND_TPL, KIND_TLS, KIND_H2 = range(7)
# Per kind, a salt xor-ed into the value key so equal values of two kinds stay two features.
KIND_SALT = np.array([0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89,
                      0x452821E638D01377, 0xBE5466CF34E90C6C, 0xC0AC29B7C97C50DD], np.uint64)


@dataclass(frozen=True)
class KindKeys:
    """The events of a batch that carry a feature of one kind, and each one's value key."""

    kind: int
    rows: np.ndarray  # int64 event rows (-1: a pair not taken from one event, tpl)
    value: np.ndarray  # uint64 per row


def feature_partition(feature: str, n_partitions: int) -> int:
    """Partition that owns ``feature`` in every process: CRC-32 of its UTF-8 bytes, modulo the count."""
    return zlib.crc32(feature.encode()) % n_partitions


def ip_prefix(ip: str) -> str | None:
    """``ip24:a.b.c`` for IPv4, ``ip48:x:y:z`` for IPv6, None for an empty or unparsable address."""
    if ":" in ip:
        try:
            top = int(ipaddress.IPv6Address(ip)) >> 80
        except ValueError:
            return None
        return f"ip48:{top >> 32:x}:{(top >> 16) & 0xFFFF:x}:{top & 0xFFFF:x}"
    head, dot, _ = ip.rpartition(".")
    return f"ip24:{head}" if dot else None


def ua_feature(user_agent: str) -> str:
    # Hashed: user agents can be long and carry client details we do not need to repeat.
    return "ua:" + blake2b64(user_agent).hex()


def tls_feature(fingerprint: str) -> str:
    # As sent: a JA4 or JA3 is short, and readable in a cluster's listed features.
    return "tls:" + fingerprint


def h2_feature(fingerprint: str) -> str:
    # Hashed: an HTTP/2 SETTINGS fingerprint runs to hundreds of characters.
    return "h2:" + blake2b64(fingerprint).hex()


def tpl_feature(value: int, band_bits: int) -> str:
    """Name of a ``tpl`` value key (band << band_bits | band value)."""
    band, bits = value >> band_bits, value & ((1 << band_bits) - 1)
    return f"tpl:{band}:{bits:0{(band_bits + 3) // 4}x}"


def tpl_band(feature: str) -> int:
    """The band a ``tpl`` feature's name (``tpl_feature``) holds a value of."""
    return int(feature.split(":")[1])


def string_hashes(values: Sequence[str]) -> np.ndarray:
    """Python's hash of each string, as uint64 (stable within this process)."""
    return np.fromiter(map(hash, values), np.int64, len(values)).view(np.uint64)


def _non_empty(values: Sequence[str]) -> np.ndarray:
    return np.flatnonzero(np.fromiter(map(len, values), np.int64, len(values)))


def string_keys(kind: int, values: Sequence[str]) -> KindKeys:
    """A feature per non-empty string (card fingerprint, user agent), keyed by its hash."""
    rows = _non_empty(values)
    return KindKeys(kind, rows, string_hashes(values)[rows])


@functools.lru_cache(maxsize=1 << 14)
def _ip6_group(ip: str) -> str:
    return ip_prefix(ip) or ""  # parsing is slow; IPv6 clients repeat


def ip_keys(ips: Sequence[str]) -> KindKeys:
    """A feature per event with a parsable IP: its /24 (IPv4) or /48 (IPv6), keyed by the group's hash."""
    # IPv4's group is ip_prefix's text without "ip24:", so no string is built for it.
    groups = [ip.rpartition(".")[0] if ":" not in ip else _ip6_group(ip) for ip in ips]
    rows = _non_empty(groups)
    return KindKeys(KIND_IP, rows, string_hashes(groups)[rows])


def asn_keys(asn: np.ndarray) -> KindKeys:
    """A feature per event with a known ASN (0 = unknown: no evidence)."""
    values = np.asarray(asn).astype(np.uint64)
    rows = np.flatnonzero(values)
    return KindKeys(KIND_ASN, rows, values[rows])


def feature_names(kind: np.ndarray, value: np.ndarray, row: np.ndarray, raw: Mapping[str, Any],
                  band_bits: int) -> list[str]:
    """The name of each feature, built from its value (asn, tpl) or from the event ``row`` that carries it."""
    pay, ips, uas = raw["payment_fingerprint"], raw["client_ip"], raw["user_agent"]
    tls, h2 = raw["tls_fingerprint"], raw["http2_fingerprint"]
    names = []
    for k, v, r in zip(kind.tolist(), value.tolist(), row.tolist(), strict=True):
        if k == KIND_PAY:
            names.append("pay:" + pay[r])
        elif k == KIND_IP:
            names.append(ip_prefix(ips[r]) or "")  # rows with a key always have a prefix
        elif k == KIND_ASN:
            names.append(f"asn:{v}")
        elif k == KIND_UA:
            names.append(ua_feature(uas[r]))
        elif k == KIND_TLS:
            names.append(tls_feature(tls[r]))
        elif k == KIND_H2:
            names.append(h2_feature(h2[r]))
        else:
            names.append(tpl_feature(v, band_bits))
    return names

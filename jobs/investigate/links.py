"""Why cluster members are linked: the link rules of pipeline/linking, re-applied to the rollups.

Linking keeps its pair evidence in the worker's state, not in ClickHouse, so the
investigation rebuilds it from ``account_entities_1h``: two members share a feature
kind when they share a value of it (card fingerprint, /24 or /48, ASN, user agent) or,
for templates, when two of their prompt SimHashes agree on a band and lie within
``max_hamming`` bits. Each kind counts once, with its weight from the linking file;
a value carried by more accounts than the kind's cap is popular and counts for nothing.
A pair is linked when its points reach ``link_threshold`` (docs/linking.md).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np

from jobs.investigate.result import Link, LinkFeature
from pipeline.linking.config import LinkingConfig
from pipeline.linking.feature_keys import h2_feature, tls_feature, tpl_feature, ua_feature

# account_entities_1h kind -> linking feature kind
LINK_KINDS: Final = {"payment": "pay", "ip_net": "ip", "asn": "asn", "user_agent": "ua", "tls_fingerprint": "tls",
                     "http2_fingerprint": "h2"}
_SAMPLES_PER_BUCKET = 8  # SimHashes of one account compared per band value: templated prompts cluster


def feature_name(kind: str, value: str) -> str:
    """The name linking gives an entity value (as in ``clusters.shared_features``)."""
    if kind == "payment":
        return f"pay:{value}"
    if kind == "ip_net":
        net = value.rsplit("/", 1)[0]
        return f"ip24:{net.rsplit('.', 1)[0]}" if "." in net else f"ip48:{net.rstrip(':')}"
    if kind == "asn":
        return f"asn:{value}"
    if kind == "user_agent":
        return ua_feature(value)
    if kind == "tls_fingerprint":
        return tls_feature(value)
    if kind == "http2_fingerprint":
        return h2_feature(value)
    raise ValueError(f"no link feature for entity kind {kind!r}")


def template_pairs(templates: Mapping[str, Sequence[int]], config: LinkingConfig
                   ) -> dict[tuple[str, str], tuple[int, int, int]]:
    """Per account pair (a < b) one near-duplicate: (simhash of a, simhash of b, the tpl feature value key)."""
    bits = config.template.band_bits
    mask = (1 << bits) - 1
    buckets: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for account, hashes in templates.items():
        for h in hashes:
            for band in range(config.template.bands):
                key = band << bits | (h >> (bits * band)) & mask  # as pipeline/linking/observations.py
                bucket = buckets[key][account]
                if len(bucket) < _SAMPLES_PER_BUCKET:
                    bucket.append(h)
    found: dict[tuple[str, str], tuple[int, int, int]] = {}
    for key, by_account in buckets.items():
        if len(by_account) < 2:
            continue
        accounts = sorted(by_account)
        for a, b in itertools.combinations(accounts, 2):
            if (a, b) in found:
                continue
            x = np.array(by_account[a], np.uint64)[:, None]
            y = np.array(by_account[b], np.uint64)[None, :]
            dist = np.bitwise_count(x ^ y)
            i, j = np.unravel_index(int(np.argmin(dist)), dist.shape)
            if int(dist[i, j]) <= config.template.max_hamming:
                found[(a, b)] = (int(x[i, 0]), int(y[0, j]), key)
    return found


def member_links(values: Mapping[str, Mapping[str, set[str]]], templates: Mapping[str, Sequence[int]],
                 popular: set[tuple[str, str]], config: LinkingConfig) -> list[Link]:
    """Every member pair sharing any feature, strongest first.

    ``values``: account -> entity kind (LINK_KINDS) -> values; ``templates``: account ->
    prompt SimHashes; ``popular``: (entity kind, value) carried by too many accounts.
    """
    tpl = template_pairs(templates, config)
    links = []
    for a, b in itertools.combinations(sorted(set(values) | set(templates)), 2):
        features: list[LinkFeature] = []
        for kind, link_kind in LINK_KINDS.items():
            shared = sorted(values.get(a, {}).get(kind, set()) & values.get(b, {}).get(kind, set()))
            features += [LinkFeature(link_kind, feature_name(kind, v), v, (kind, v) in popular) for v in shared]
        if (a, b) in tpl:
            ha, hb, key = tpl[(a, b)]
            features.append(LinkFeature("tpl", tpl_feature(key, config.template.band_bits),
                                        f"{ha:016x} ~ {hb:016x}", False))
        if not features:
            continue
        points = config.points({f.kind for f in features if not f.popular})
        strength = round(sum(points.values()), 4)
        links.append(Link(a, b, features, points, strength, strength >= config.link_threshold))
    links.sort(key=lambda link: (-link.strength, link.a, link.b))
    return links

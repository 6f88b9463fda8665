"""Does a call's client claim a browser its TLS / HTTP/2 handshake is not? (per event, vectorised)

Two structural facts, no fingerprint database: the JA4's ALPN and the HTTP/2 pseudo-header order
(``CLIENT_RULES``) against the engine the user agent claims; anything malformed, absent or outside the
rules is no evidence. Each distinct string of a column is classified once (cached, bounded) into a
small code; the per-event verdict is one NumPy table lookup over the three codes. The rules and
their cost: docs/signals.md, "Client claims against the handshake".
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# The rules as data, versioned: change the version when a verdict can change.
CLIENT_RULES: dict[str, Any] = {
    "version": 1,
    # A browser claim starts with this token (every current browser's user agent does).
    "browser_prefix": "Mozilla/5.0",
    # Lower-cased tokens that make a Mozilla/5.0 user agent no browser claim: crawlers
    # ("Googlebot/2.1; +http://...") and HTTP libraries that say what they are. Android
    # WebView's "; wv)" is copied by apps onto their native HTTP clients (OkHttp, Cronet).
    "not_a_browser": ["bot/", "+http", "crawler", "spider", "python", "curl/", "wget/", "httpx", "aiohttp",
                      "requests", "okhttp", "go-http-client", "java/", "node-fetch", "axios", "undici", "postman",
                      "insomnia", "; wv)"],
    # First token found (in this order, case-sensitive) names the engine the user agent
    # claims. Every browser on iOS is WebKit (CriOS, FxiOS, EdgiOS included); Edge, Opera,
    # Brave, Vivaldi are Chromium; Safari/ without Chrome/ is WebKit.
    "engine_tokens": [["iPhone", "webkit"], ["iPad", "webkit"], ["iPod", "webkit"], ["CriOS/", "webkit"],
                      ["FxiOS/", "webkit"], ["EdgiOS/", "webkit"], ["Firefox/", "gecko"], ["Chrome/", "chromium"],
                      ["Chromium/", "chromium"], ["Edg/", "chromium"], ["OPR/", "chromium"], ["Safari/", "webkit"]],
    # HTTP/2 pseudo-header orders each engine sends (m=:method a=:authority s=:scheme p=:path).
    # Chromium (Chrome, Edge, Opera): m,a,s,p; Firefox: m,p,a,s; Safari up to 16: m,s,p,a,
    # Safari 17+ (macOS and iOS): m,s,a,p.
    "pseudo_header_orders": {"chromium": ["masp"], "gecko": ["mpas"], "webkit": ["mspa", "msap"]},
    # JA4 ALPN codes that no browser sends over TCP: http/1.1 only, no ALPN.
    "non_browser_alpn": ["h1", "00"],
}

ENGINES: tuple[str, ...] = tuple(sorted(CLIENT_RULES["pseudo_header_orders"]))  # code i + 1; 0: no browser claim
TLS_NONE, TLS_BROWSER_LIKE, TLS_NO_H2 = 0, 1, 2  # absent, JA3, malformed, non-TCP, h2 or other ALPN: no verdict
PSEUDO_ORDERS: tuple[str, ...] = tuple("".join(p) for p in itertools.permutations("masp"))  # code i + 1; 0: none

# JA4 section a: protocol, TLS version, SNI, cipher count, extension count, ALPN first and last character.
_JA4 = re.compile(r"([tqd])(?:1[0-3]|s[23]|d[1-3]|00)[di]\d{4}([0-9A-Za-z]{2})_[0-9a-f]{12}_[0-9a-f]{12}")
_CACHE_MAX = 100_000
_caches: tuple[dict[str, int], dict[str, int], dict[str, int]] = ({}, {}, {})


def engine_code(user_agent: str) -> int:
    """1 + index in ENGINES of the browser engine the user agent claims; 0 when it claims none."""
    if not user_agent.startswith(CLIENT_RULES["browser_prefix"]):
        return 0
    lower = user_agent.lower()
    if any(token in lower for token in CLIENT_RULES["not_a_browser"]):
        return 0
    for token, engine in CLIENT_RULES["engine_tokens"]:
        if token in user_agent:
            return 1 + ENGINES.index(engine)
    return 0


def tls_code(fingerprint: str) -> int:
    """TLS_NO_H2 for a TCP JA4 whose ALPN no browser sends, TLS_BROWSER_LIKE for another TCP JA4,
    TLS_NONE for anything else (absent, JA3, QUIC or DTLS, malformed)."""
    m = _JA4.fullmatch(fingerprint)
    if m is None or m.group(1) != "t":
        return TLS_NONE
    return TLS_NO_H2 if m.group(2) in CLIENT_RULES["non_browser_alpn"] else TLS_BROWSER_LIKE


def pseudo_order_code(fingerprint: str) -> int:
    """1 + index in PSEUDO_ORDERS of the Akamai fingerprint's pseudo-header order; 0 when absent or malformed."""
    sections = fingerprint.split("|")
    if len(sections) != 4:
        return 0
    order = sections[3].replace(",", "").replace(" ", "").lower()
    return PSEUDO_ORDERS.index(order) + 1 if order in PSEUDO_ORDERS else 0


def _verdict_table() -> np.ndarray:
    """MISMATCH[engine, tls, order]: the verdict for every combination of the three codes."""
    table = np.zeros((len(ENGINES) + 1, 3, len(PSEUDO_ORDERS) + 1), np.bool_)
    for e, engine in enumerate(ENGINES, start=1):
        table[e, TLS_NO_H2, :] = True
        for o, order in enumerate(PSEUDO_ORDERS, start=1):
            if order not in CLIENT_RULES["pseudo_header_orders"][engine]:
                table[e, :, o] = True
    return table


MISMATCH = _verdict_table()


def _codes(values: Sequence[str], cache: dict[str, int], classify: Callable[[str], int]) -> np.ndarray:
    """classify(v) for every value, through a bounded cache of the distinct ones."""
    try:
        return np.fromiter(map(cache.__getitem__, values), np.uint8, len(values))
    except KeyError:
        distinct = set(values)
        if len(cache) + len(distinct) > _CACHE_MAX:
            cache.clear()
        for v in distinct.difference(cache):
            cache[v] = classify(v)
        return np.fromiter(map(cache.__getitem__, values), np.uint8, len(values))


def client_mismatch(user_agents: Sequence[str], tls: Sequence[str], http2: Sequence[str]) -> np.ndarray:
    """Per event: does its user agent claim a browser its TLS or HTTP/2 fingerprint contradicts? (bool)"""
    n = len(user_agents)
    engines = _codes(user_agents, _caches[0], engine_code)
    claims = np.flatnonzero(engines)
    out = np.zeros(n, np.bool_)
    if claims.size == 0:
        return out
    # Only calls that claim a browser can disagree: their fingerprints are all that is read.
    if claims.size == n:
        tls_of, h2_of = tls, http2
    else:
        rows = claims.tolist()
        tls_of, h2_of = [tls[i] for i in rows], [http2[i] for i in rows]
    out[claims] = MISMATCH[engines[claims], _codes(tls_of, _caches[1], tls_code),
                           _codes(h2_of, _caches[2], pseudo_order_code)]
    return out

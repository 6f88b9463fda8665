"""A browser user agent against the client's TLS (JA4 ALPN) and HTTP/2 (pseudo-header order) fingerprints."""

from __future__ import annotations

import pytest

from pipeline.decode import client_claims as cc
from tests.support.client_fingerprints import (
    CHROME,
    CHROME_IOS,
    EDGE,
    FIREFOX,
    GOOGLEBOT,
    JA3,
    JA4_H1,
    JA4_H2,
    JA4_NO_ALPN,
    JA4_QUIC_H1,
    SAFARI,
    WEBVIEW,
    h2,
)


def mismatch(ua: str, tls: str = "", http2: str = "") -> bool:
    return bool(cc.client_mismatch([ua], [tls], [http2])[0])


@pytest.mark.parametrize("ua, engine", [
    (CHROME, "chromium"), (EDGE, "chromium"), (FIREFOX, "gecko"), (SAFARI, "webkit"), (CHROME_IOS, "webkit"),
    ("python-requests/2.31.0", None), ("OpenAI/Python 1.51.0", None), (GOOGLEBOT, None), (WEBVIEW, None),
    ("Mozilla/5.0 python-requests/2.31 Chrome/120.0", None), ("Mozilla/5.0 (X11; Linux x86_64)", None), ("", None),
])
def test_the_engine_a_user_agent_claims(ua: str, engine: str | None) -> None:
    assert cc.engine_code(ua) == (0 if engine is None else 1 + cc.ENGINES.index(engine))


@pytest.mark.parametrize("ua, tls, http2, expected", [
    (CHROME, JA4_H1, "", True),  # a browser that does not offer HTTP/2: an HTTP/1.1 library
    (FIREFOX, JA4_NO_ALPN, "", True),  # no ALPN at all
    (CHROME, JA4_H2, h2("m,a,s,p"), False),  # consistent Chrome
    (EDGE, JA4_H2, h2("m,a,s,p"), False),
    (FIREFOX, JA4_H2, h2("m,p,a,s"), False),
    (SAFARI, JA4_H2, h2("m,s,p,a"), False),  # Safari up to 16
    (SAFARI, JA4_H2, h2("m,s,a,p"), False),  # Safari 17+
    (CHROME_IOS, "", h2("m,s,a,p"), False),  # Chrome on iOS is WebKit
    (FIREFOX, JA4_H2, h2("m,a,s,p"), True),  # Firefox user agent, Chrome's pseudo-header order
    (CHROME, "", h2("a,m,p,s"), True),  # Go net/http's order under a Chrome user agent
    (CHROME, "", "", False),  # no fingerprint: no evidence
    (CHROME, JA3, "", False),  # a JA3 carries no ALPN: no judgement
    (CHROME, JA4_QUIC_H1, "", False),  # not TCP: no judgement
    (CHROME, "t13d1516h1_8daaf6152771", "", False),  # malformed JA4
    (CHROME, "", "m,p,a,s", False),  # malformed Akamai fingerprint (one section)
    (CHROME, "", h2("m,a,s"), False),  # not the four pseudo-headers
    ("python-requests/2.31.0", JA4_H1, h2("m,p,a,s"), False),  # an honest library claims no browser
    (GOOGLEBOT, JA4_H1, "", False),
])
def test_rules(ua: str, tls: str, http2: str, expected: bool) -> None:
    assert mismatch(ua, tls, http2) is expected


def test_a_batch_is_judged_per_event_with_repeats_and_a_cold_cache() -> None:
    for cache in cc._caches:
        cache.clear()
    uas = [CHROME, "python-httpx/0.27", FIREFOX, CHROME, SAFARI, CHROME] * 50
    tls = [JA4_H1, JA4_H1, JA4_H2, JA4_H2, "", JA3] * 50
    http2 = ["", "", h2("m,a,s,p"), h2("m,a,s,p"), h2("m,p,a,s"), ""] * 50
    got = cc.client_mismatch(uas, tls, http2)
    assert got.tolist() == [True, False, True, False, True, False] * 50
    assert cc.client_mismatch(uas, tls, http2).tolist() == got.tolist()  # warm: the same verdicts
    one = cc.client_mismatch(["python-httpx/0.27", CHROME], [JA4_H1, JA4_H1], ["", ""])  # one browser claim
    assert one.tolist() == [False, True]
    assert not cc.client_mismatch([], [], []).size


def test_the_verdict_table_follows_the_rules() -> None:
    rules = cc.CLIENT_RULES["pseudo_header_orders"]
    for e, engine in enumerate(cc.ENGINES, start=1):
        agreeing = [cc.PSEUDO_ORDERS.index(o) + 1 for o in rules[engine]]
        assert not cc.MISMATCH[e, cc.TLS_BROWSER_LIKE, agreeing].any()
        assert cc.MISMATCH[e, cc.TLS_NO_H2].all()
        assert cc.MISMATCH[e, cc.TLS_NONE, 1:].sum() == len(cc.PSEUDO_ORDERS) - len(agreeing)
    assert not cc.MISMATCH[0].any()  # no browser claim, no mismatch

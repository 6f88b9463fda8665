"""User agents and TLS / HTTP/2 fingerprints of real clients, for the client-mismatch tests."""

from __future__ import annotations

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
EDGE = CHROME + " Edg/131.0.0.0"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.4 Safari/605.1.15")
CHROME_IOS = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "CriOS/122.0.6261.89 Mobile/15E148 Safari/604.1")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
WEBVIEW = ("Mozilla/5.0 (Linux; Android 14; Pixel 8; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 "
           "Chrome/131.0.0.0 Mobile Safari/537.36")

JA4_H2 = "t13d1516h2_8daaf6152771_b186095e22b6"
JA4_H1 = "t13d1516h1_8daaf6152771_b186095e22b6"
JA4_NO_ALPN = "t13d151600_8daaf6152771_b186095e22b6"
JA4_QUIC_H1 = "q13d1516h1_8daaf6152771_b186095e22b6"
JA3 = "0149f47eabf9a20d0893e2a44e5a6323"


def h2(order: str) -> str:
    """An Akamai HTTP/2 fingerprint (Chrome's SETTINGS) with the given pseudo-header order."""
    return f"1:65536;2:0;4:6291456;6:262144|15663105|0|{order}"

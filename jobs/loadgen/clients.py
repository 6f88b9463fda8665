"""Client stacks of generated traffic: the TLS (JA4) and HTTP/2 fingerprints behind a user agent.

The values are synthetic but well formed (JA4: ``t13d`` + cipher and extension counts +
ALPN, then two 12-hex hashes; HTTP/2: Akamai's ``SETTINGS|WINDOW_UPDATE|PRIORITY|pseudo-header
order``); none is a measured fingerprint of a real library. What the generator needs of them:
- every user of one client library sends that library's stack, so a library fingerprint is
  shared by many unrelated accounts (linking retracts it as popular);
- a fleet runs its own scraping stack (TLS and HTTP/2), shared by its members only, and a
  reseller its own gateway stack, shared by all its accounts;
- a browser's handshake matches its user agent (ALPN h2, its pseudo-header order), and a
  library claiming to be a browser keeps its library's handshake.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

_H2_CHROME: Final = "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"
_H2_FIREFOX: Final = "1:65536;4:131072;5:16384|12517377|0|m,p,a,s"
_H2_SAFARI: Final = "2:0;4:4194304;3:100|10485760|0|m,s,p,a"
_H2_CURL: Final = "3:100;4:10485760;2:0|1048510465|0|m,p,s,a"


@dataclass(frozen=True, slots=True)
class Client:
    agent: str  # the user agent string
    tls: str  # JA4; "" = the gateway computed none
    h2: str  # HTTP/2 fingerprint; "" = an HTTP/1.1 client


# (token in the user agent, JA4, HTTP/2): the first token the agent contains decides.
_FAMILIES: Final = (
    ("Edg/", "t13d1516h2_8daaf6152771_e5627efa2ab1", _H2_CHROME),
    ("Chrome/", "t13d1516h2_8daaf6152771_b186095e22b6", _H2_CHROME),
    ("Firefox/", "t13d1715h2_5b57614c22b0_3d5424432f57", _H2_FIREFOX),
    ("Safari/", "t13d2014h2_a09f3c656075_14788d8d241b", _H2_SAFARI),
    ("OpenAI/Python", "t13d1812h1_85036bcba153_b26ce05bbdd6", ""),  # the SDK runs on httpx
    ("python-httpx", "t13d1812h1_85036bcba153_b26ce05bbdd6", ""),
    ("python-requests", "t13d1812h1_85036bcba153_375ca2c5e164", ""),
    ("aiohttp", "t13d181100_85036bcba153_375ca2c5e164", ""),
    ("OpenAI/NodeJS", "t13d591000_a33745022dd6_1f22a2ca17c4", ""),
    ("node", "t13d591000_a33745022dd6_1f22a2ca17c4", ""),
    ("axios", "t13d591000_a33745022dd6_1f22a2ca17c4", ""),
    ("curl", "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6", _H2_CURL),
    ("Go-http-client", "t13d1309h1_6f7e2c1c9e6a_7a6b09d4ae7c", ""),
    ("okhttp", "t13d1613h2_46e7e9700bed_eca864cca44a", "4:16777216|16711681|0|m,p,a,s"),
    ("Java-http-client", "t13d4213h1_2b0648ab686e_bdd27f9e7d4b", ""),
)
# What a browser user agent looks like, per family (matching stacks in _FAMILIES).
BROWSER_AGENTS: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15",
)


def client_of(agent: str) -> Client:
    """The stack a client library or browser sends; an unknown agent: no fingerprint."""
    for token, tls, h2 in _FAMILIES:
        if token in agent:
            return Client(agent, tls, h2)
    return Client(agent, "", "")


def fleet_client(agent: str, fleet_id: str) -> Client:
    """A fleet's (or a reseller's) own client stack (a pinned TLS build, HTTP/2 with its own SETTINGS),
    shared by its accounts; ``fleet_id`` names the group."""
    digest = hashlib.blake2b(fleet_id.encode(), digest_size=14).digest()
    window = 1_048_576 + int.from_bytes(digest[12:], "big")
    return Client(agent, f"t13d1710h2_{digest[:6].hex()}_{digest[6:12].hex()}", f"1:4096;4:{window}|{window}|0|m,s,a,p")


def claiming_browser(client: Client, browser: str) -> Client:
    """``client``'s handshake under a browser's user agent: a library posing as a browser."""
    return Client(browser, client.tls, client.h2)


def unit_draw(account_id: str, purpose: str) -> float:
    """A uniform number in [0, 1) fixed by the account id: choices that leave the generator's RNG alone."""
    digest = hashlib.blake2b(f"{purpose}:{account_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64

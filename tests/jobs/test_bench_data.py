"""The bench's traffic gives each bench account an identity of its own (``jobs.bench.data``)."""

from __future__ import annotations

from typing import Any

from jobs.bench.data import SHARED_TEMPLATES_EVERY, _as_bench_account, _Identity

NAMES = [f"bench-{i:07d}" for i in range(300)]
BASE = 0x0123_4567_89AB_CDEF


def event(simhash: int, **extra: Any) -> dict[str, Any]:
    return {"account_id": "loadgen-1", "client_ip": "198.51.100.7", "asn": 64500, "user_agent": "sdk/1",
            "prompt_simhash": f"{simhash:016x}", **extra}


def as_account(e: dict[str, Any], k: int, identity: _Identity) -> int:
    _as_bench_account(e, k, NAMES, identity)
    return int(e["prompt_simhash"], 16)


def test_a_template_stays_a_template_within_an_account_but_not_across_accounts() -> None:
    identity = _Identity(seed=7)
    near = BASE ^ 0b101  # a templated prompt 2 bits from the base
    a1, a2 = as_account(event(BASE), 1, identity), as_account(event(near), 1, identity)
    b1 = as_account(event(BASE), 2, identity)
    assert (a1 ^ a2).bit_count() == 2  # the account's own near-duplicates survive
    assert (a1 ^ b1).bit_count() > 12  # two accounts no longer share the loadgen template


def test_one_account_in_every_hundred_shares_the_loadgen_templates() -> None:
    identity = _Identity(seed=7)
    shared = [as_account(event(BASE), k, identity) for k in (0, SHARED_TEMPLATES_EVERY, 2 * SHARED_TEMPLATES_EVERY)]
    assert shared == [BASE] * 3


def test_an_absent_simhash_stays_absent_and_identities_are_stable() -> None:
    identity = _Identity(seed=7)
    e = event(0, payment_fingerprint="x")
    e["prompt_simhash"] = None
    _as_bench_account(e, 5, NAMES, identity)
    assert e["prompt_simhash"] is None and e["payment_fingerprint"] == "card-0000005"
    again = event(0, asn=1, user_agent="other/2")
    _as_bench_account(again, 5, NAMES, identity)
    assert (again["asn"], again["user_agent"]) == (64500, "sdk/1")  # the first event's, kept
    assert as_account(event(BASE), 3, _Identity(seed=7)) == as_account(event(BASE), 3, _Identity(seed=7))

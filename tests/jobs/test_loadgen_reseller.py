"""A reseller in the load generator: thousands of accounts behind one router's egress, client and card,
most of them legitimate customers, a few distillers calling at a customer's rate."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import orjson
import pytest

from jobs.eval.scenario import scaled_mix, varied_mix
from jobs.loadgen import ARCHETYPES, ATTACKS, BENIGN, DEFAULT_MIX, GeneratedEvent, ScenarioConfig, generate, labels
from jobs.loadgen.archetypes import ROUTER
from jobs.loadgen.population import Account
from jobs.loadgen.scenario import population, write_labels
from jobs.loadgen.variation import RANGES, varied_archetypes
from tests.support.generated import slash24

CUSTOMER, DISTILLER = "reseller_customer", "reseller_distiller"
MIX = {CUSTOMER: 30, DISTILLER: 4, "chat_app": 4, "hobbyist": 10, "hydra_fleet": 4}
# Four hours from 10:00 UTC: customers in every time zone, distillers around the clock.
CONFIG = ScenarioConfig(seed=33, start_ms=1_770_890_400_000, duration_s=4 * 3600, rate_eps=4, mix=MIX)
Grouped = dict[str, tuple[Account, list[GeneratedEvent]]]


@pytest.fixture(scope="module")
def events() -> list[GeneratedEvent]:
    return list(generate(CONFIG))


@pytest.fixture(scope="module")
def accounts(events: list[GeneratedEvent]) -> Grouped:
    grouped: dict[str, list[GeneratedEvent]] = defaultdict(list)
    for e in events:
        grouped[e["account_id"]].append(e)
    return {a.account_id: (a, grouped[a.account_id]) for a in population(CONFIG).accounts}


def of(accounts: Grouped, *names: str) -> list[tuple[Account, list[GeneratedEvent]]]:
    return [(a, evs) for a, evs in accounts.values() if a.archetype.name in names]


def output(e: GeneratedEvent) -> int:
    return int(e["completion_tokens"] + e.get("reasoning_tokens", 0))


def test_the_reseller_is_in_the_default_mix_and_labelled_once(tmp_path: Path) -> None:
    assert CUSTOMER in BENIGN and DISTILLER in ATTACKS
    assert (DEFAULT_MIX[CUSTOMER], DEFAULT_MIX[DISTILLER]) == (60, 4)
    assert ARCHETYPES[CUSTOMER].reseller is ARCHETYPES[DISTILLER].reseller is ROUTER
    assert not ARCHETYPES[CUSTOMER].fleet and not ARCHETYPES[DISTILLER].fleet
    truth = labels(CONFIG)
    behind = {a: label.reseller_id for a, label in truth.items() if label.archetype in (CUSTOMER, DISTILLER)}
    assert len(behind) == 34 and len(set(behind.values())) == 1 and None not in behind.values()
    assert all(label.reseller_id is None for a, label in truth.items() if a not in behind)
    assert all(truth[a].fleet_id is None for a in behind)
    write_labels(CONFIG, tmp_path / "labels.json")
    written = orjson.loads((tmp_path / "labels.json").read_bytes())
    assert {written[a]["reseller_id"] for a in behind} == set(behind.values())


def test_every_reseller_account_calls_from_the_one_egress(accounts: Grouped) -> None:
    routed = of(accounts, CUSTOMER, DISTILLER)
    calls = [e for _, evs in routed for e in evs]
    assert len(calls) > 5000 and all(evs for _, evs in routed)
    nets = {slash24(e["client_ip"]) for e in calls}
    assert ROUTER.egress.prefixes[0] <= len(nets) <= ROUTER.egress.prefixes[1]
    assert len({e["client_ip"] for e in calls}) <= ROUTER.egress.ips[1]
    assert {e["asn"] for e in calls} == {next(iter(calls))["asn"]}  # one provider: one ASN
    assert {e["network_type"] for e in calls} == {"hosting"}
    # Load-balanced: an account's calls leave from most of the exits, not a home address of its own.
    for _, evs in routed:
        if len(evs) >= 100:
            assert len({slash24(e["client_ip"]) for e in evs}) == len(nets)
    # Nobody else calls from the router's exits.
    others = {e["client_ip"] for _, evs in of(accounts, "chat_app", "hobbyist", "hydra_fleet") for e in evs}
    assert not others & {e["client_ip"] for e in calls}


def test_every_reseller_account_sends_the_routers_client_and_mostly_its_card(accounts: Grouped) -> None:
    routed = of(accounts, CUSTOMER, DISTILLER)
    calls = [e for _, evs in routed for e in evs]
    assert len({e["user_agent"] for e in calls}) == 1 and calls[0]["user_agent"] in ROUTER.egress.agents
    stack = {(e["tls_fingerprint"], e["http2_fingerprint"]) for e in calls}
    assert len(stack) == 1
    elsewhere = {(e.get("tls_fingerprint"), e.get("http2_fingerprint"))
                 for _, evs in of(accounts, "chat_app", "hobbyist", "hydra_fleet") for e in evs}
    assert not stack & elsewhere  # the router's own stack, neither a library's nor the fleet's
    cards = Counter(evs[0].get("payment_fingerprint") for _, evs in routed)
    card, billed = cards.most_common(1)[0]
    assert card is not None and set(cards) <= {card, None}
    assert billed / len(routed) > 0.75
    # Each customer holds its own account and keys.
    owners = defaultdict(set)
    for account, evs in routed:
        for e in evs:
            owners[e["api_key_id"]].add(account.account_id)
    assert all(len(o) == 1 for o in owners.values())


def test_distillers_take_far_more_per_call_at_a_customers_rate(accounts: Grouped) -> None:
    customers, distillers = of(accounts, CUSTOMER), of(accounts, DISTILLER)
    ok = {a.account_id: [e for e in evs if e["status"] == 200] for a, evs in customers + distillers}
    customer_take = np.median([np.mean([output(e) for e in ok[a.account_id]]) for a, _ in customers])
    for account, evs in distillers:
        answered = ok[account.account_id]
        assert np.mean([output(e) for e in answered]) > 4 * customer_take
        assert np.mean([e["elicits_reasoning"] for e in evs]) > 0.4
        assert len({e["topic"] for e in evs}) >= 5  # capability coverage
        assert len({e["prompt_hash"] for e in evs}) / len(evs) > 0.95
    narrow = ARCHETYPES[CUSTOMER].content.topics_per_account
    assert narrow is not None
    for _, evs in customers:
        assert len({e["topic"] for e in evs}) <= narrow
        if len(evs) >= 100:
            assert np.mean([e["elicits_reasoning"] for e in evs]) < 0.2
    # Volume alone does not separate them: every distiller calls less than the busiest customers.
    counts = sorted(len(evs) for _, evs in customers)
    assert all(len(evs) < counts[-3] for _, evs in distillers)
    assert np.median([len(evs) for _, evs in distillers]) < 3 * np.median(counts)


def test_the_reseller_scales_with_the_mix_into_thousands() -> None:
    small = scaled_mix(2)
    assert (small[CUSTOMER], small[DISTILLER]) == (120, 8)
    large = scaled_mix(20)
    assert large[CUSTOMER] + large[DISTILLER] == 1280
    config = ScenarioConfig(seed=5, duration_s=600, rate_eps=50,
                            mix={CUSTOMER: large[CUSTOMER], DISTILLER: large[DISTILLER]})
    pop = population(config)
    assert Counter(a.archetype.name for a in pop.accounts) == {CUSTOMER: 1200, DISTILLER: 80}
    assert len({a.reseller_id for a in pop.accounts}) == 1
    exits = {frozenset(pop.tables.ips[int(i)] for i in a.addresses) for a in pop.accounts}
    assert len(exits) == 1
    assert len({pop.tables.clients[int(i)] for a in pop.accounts for i in a.agents}) == 1
    # Distillers stay a minority at any scale, and in a varied mix.
    for seed in range(5):
        varied = varied_mix(seed, large)
        assert varied[DISTILLER] < 0.2 * varied[CUSTOMER]


def test_the_reseller_is_deterministic_per_seed_and_independent_of_the_rest_of_the_mix() -> None:
    short = CONFIG.model_copy(update={"duration_s": 600, "rate_eps": 20})
    first = b"".join(orjson.dumps(e) for e in generate(short))
    assert first == b"".join(orjson.dumps(e) for e in generate(short))

    def egress(config: ScenarioConfig) -> tuple[frozenset[str], set[str], set[str | None]]:
        routed = [a for a in population(config).accounts if a.reseller_id]
        tables = population(config).tables
        ips = {frozenset(tables.ips[int(i)] for i in a.addresses) for a in routed}
        assert len(ips) == 1
        return next(iter(ips)), {a.reseller_id or "" for a in routed}, {a.payment for a in routed} - {None}

    base = egress(CONFIG)
    # The router is drawn from its own stream: what else is in the mix does not move it.
    assert egress(CONFIG.model_copy(update={"mix": {CUSTOMER: 3, DISTILLER: 1}})) == base
    other = egress(CONFIG.model_copy(update={"seed": 34}))
    assert other[0] != base[0] and other[1] != base[1] and other[2] != base[2]


def _log_odds(p: float) -> float:
    return math.log(p / (1 - p))


def test_variation_moves_the_reseller_once_for_all_its_accounts() -> None:
    seen = set()
    for seed in range(12):
        varied = varied_archetypes(seed)
        router = varied[CUSTOMER].reseller
        assert router is not None and router == varied[DISTILLER].reseller
        assert router.name == ROUTER.name
        egress, base = router.egress, ROUTER.egress
        assert (egress.agents, set(egress.types)) == (base.agents, set(base.types))
        for field in ("prefixes", "ips"):
            for v, b in zip(getattr(egress, field), getattr(base, field), strict=True):
                assert max(1.0, b / RANGES.counts - 0.5) <= v <= b * RANGES.counts + 0.5, (seed, field)
        assert 0 < router.card_share < 1
        assert abs(_log_odds(router.card_share) - _log_odds(ROUTER.card_share)) <= RANGES.log_odds + 1e-9
        assert varied[DISTILLER].content.reasoning_share > 0.4
        seen.add((egress.prefixes, egress.ips, router.card_share))
    assert len(seen) == 12
    # Its own stream: varying only the reseller's archetypes gives the same reseller as the whole set.
    subset = {name: ARCHETYPES[name] for name in (CUSTOMER, DISTILLER)}
    assert dict(varied_archetypes(5, base=subset)) == {n: varied_archetypes(5)[n] for n in subset}
    # A varied scenario sends through the varied reseller.
    config = CONFIG.model_copy(update={"vary_seed": 3, "duration_s": 600})
    routed = [a for a in population(config).accounts if a.reseller_id]
    router = varied_archetypes(3)[CUSTOMER].reseller
    assert router is not None and router.egress != ROUTER.egress
    (lo, hi), most_nets = router.egress.ips, router.egress.prefixes[1]
    assert all(lo <= a.addresses.size <= max(hi, most_nets) for a in routed)

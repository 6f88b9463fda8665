"""Groups tied by time in the load generator: a synchronised fleet (one campaign spread by a load balancer
over accounts that share nothing else) and its hard negative, a company whose accounts fire on one cron."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson
import pytest

from jobs.eval.scenario import scaled_mix
from jobs.loadgen import ARCHETYPES, ATTACKS, BENIGN, DEFAULT_MIX, GeneratedEvent, ScenarioConfig, generate, labels
from jobs.loadgen.clients import client_of
from jobs.loadgen.population import Label
from jobs.loadgen.scenario import population, write_labels
from jobs.loadgen.timing import HOUR_S, MINUTE_S, campaign_rhythm, cron_rhythm
from tests.support.generated import slash24

FLEET, COMPANY, TEMPLATE = "synchronised_fleet", "cron_company", "template_fleet"
MIX = {FLEET: 24, COMPANY: 20, TEMPLATE: 12, "reseller_customer": 40, "chat_app": 4, "hobbyist": 10}
# One hour from 10:00 UTC; at 8 events/s a fleet member sends about 3 calls a minute.
CONFIG = ScenarioConfig(seed=24, start_ms=1_770_890_400_000, duration_s=3600, rate_eps=8, mix=MIX)
MINUTES = 60
Accounts = dict[str, list[GeneratedEvent]]


@pytest.fixture(scope="module")
def truth() -> dict[str, Label]:
    return labels(CONFIG)


@pytest.fixture(scope="module")
def calls() -> Accounts:
    grouped: Accounts = defaultdict(list)
    for e in generate(CONFIG):
        grouped[e["account_id"]].append(e)
    return grouped


def groups(truth: dict[str, Label], archetype: str) -> dict[str, list[str]]:
    """Accounts of ``archetype`` by fleet (or company)."""
    out: dict[str, list[str]] = defaultdict(list)
    for account, label in sorted(truth.items()):
        if label.archetype == archetype:
            out[label.fleet_id or label.company_id or account].append(account)
    return out


def per_minute(events: list[GeneratedEvent]) -> np.ndarray:
    minutes = (np.array([e["ts"] for e in events], dtype=np.int64) - CONFIG.start_ms) // 60_000
    return np.bincount(minutes, minlength=MINUTES)[:MINUTES].astype(np.float64)


def busy(calls: Accounts, accounts: list[str]) -> list[np.ndarray]:
    """Per-minute counts of the accounts sending at least one call a minute."""
    return [per_minute(calls[a]) for a in accounts if len(calls[a]) >= MINUTES]


def correlations(counts: list[np.ndarray]) -> np.ndarray:
    return np.array([np.corrcoef(a, b)[0, 1] for a, b in itertools.combinations(counts, 2)])


def closest_prompts(a: list[GeneratedEvent], b: list[GeneratedEvent]) -> int:
    """Fewest bits by which a prompt SimHash of ``a`` differs from one of ``b``."""
    x, y = (np.array([int(e["prompt_simhash"], 16) for e in evs], dtype=np.uint64) for evs in (a, b))
    return int(np.bitwise_count(x[:, None] ^ y[None, :]).min())


def test_both_are_in_the_default_mix_and_labelled_by_group(tmp_path: Path) -> None:
    fleet, company = ARCHETYPES[FLEET], ARCHETYPES[COMPANY]
    assert FLEET in ATTACKS and fleet.fleet and fleet.fleet_own_infra and fleet.campaign is not None
    assert COMPANY in BENIGN and not company.fleet and company.cron is not None
    assert (DEFAULT_MIX[FLEET], DEFAULT_MIX[COMPANY]) == (12, 12)
    assert (scaled_mix(2)[FLEET], scaled_mix(2)[COMPANY]) == (24, 24)
    truth = labels(CONFIG)
    assert sorted(len(accounts) for accounts in groups(truth, FLEET).values()) == [12, 12]  # CONFIG.fleet_size
    companies = groups(truth, COMPANY)
    lo, hi = company.cron.accounts
    sizes = sorted(len(accounts) for accounts in companies.values())
    assert sum(sizes) == 20 and len(sizes) >= 2 and all(s <= hi for s in sizes)
    assert sum(s < lo for s in sizes) <= 1  # only the last company takes what is left
    for label in truth.values():
        assert (label.company_id is not None) == (label.archetype == COMPANY)
        assert (label.fleet_id is not None) == (label.archetype in (FLEET, TEMPLATE))
    assert {label.company_id for label in truth.values() if label.company_id} == set(companies)
    write_labels(CONFIG, tmp_path / "labels.json")
    written = orjson.loads((tmp_path / "labels.json").read_bytes())
    assert {written[a]["company_id"] for accounts in companies.values() for a in accounts} == set(companies)


def test_a_synchronised_fleets_members_rise_and_fall_together(truth: dict[str, Label], calls: Accounts) -> None:
    fleets = groups(truth, FLEET)
    assert len(fleets) == 2
    for accounts in fleets.values():
        counts = busy(calls, accounts)
        assert len(counts) >= 10  # members at one call a minute or more
        r = correlations(counts)
        assert np.median(r) > 0.8 and np.mean(r > 0.7) >= 0.9, np.round(np.sort(r), 2)
    # Each campaign has waves of its own: members of two fleets do not move together.
    first, second = (busy(calls, accounts) for accounts in fleets.values())
    across = [np.corrcoef(a, b)[0, 1] for a in first for b in second]
    assert np.mean(across) < 0.5
    # Accounts at similar rates calling on their own do not: a reseller's customers, a template fleet.
    for archetype in ("reseller_customer", TEMPLATE):
        independent = busy(calls, [a for accounts in groups(truth, archetype).values() for a in accounts])
        assert len(independent) >= 4
        assert abs(np.mean(correlations(independent))) < 0.15


def test_the_campaign_comes_in_waves_of_minutes(truth: dict[str, Label], calls: Accounts) -> None:
    for accounts in groups(truth, FLEET).values():
        total = np.sum([per_minute(calls[a]) for a in accounts], axis=0)
        mean = total.mean()
        assert np.sum(total < 0.15 * mean) >= 10  # lulls
        assert np.sum(total > 1.5 * mean) >= 5  # bursts
    waves = ARCHETYPES[FLEET].campaign
    assert waves is not None
    for seed in range(5):
        rhythm = campaign_rhythm(np.random.default_rng(seed), waves, start_s=0.0, duration_s=6 * HOUR_S)
        assert rhythm.bin_s == MINUTE_S and rhythm.curve.size == 360
        assert abs(rhythm.curve.mean() - 1.0) < 1e-9
        active = rhythm.curve > 4 * rhythm.curve.min()  # a block's intensity is far above a lull's
        edges = np.flatnonzero(np.diff(active.astype(np.int8))) + 1
        runs = np.split(active, edges)[1:-1]  # whole blocks and lulls (the first and last are cut)
        blocks = [r.size for r in runs if r[0]]
        lulls = [r.size for r in runs if not r[0]]
        assert len(blocks) >= 15 and len(lulls) >= 15
        assert waves.active_min[0] <= min(blocks) and max(blocks) <= waves.active_min[1]
        assert waves.lull_min[0] <= min(lulls) and max(lulls) <= waves.lull_min[1]
        levels = [rhythm.curve[s : s + n].mean() for s, n in zip(edges[:-1], np.diff(edges), strict=True) if active[s]]
        assert np.std(np.log(levels)) > 0.2  # every block at its own intensity


def test_a_synchronised_fleets_members_share_nothing_but_time(truth: dict[str, Label], calls: Accounts) -> None:
    for accounts in groups(truth, FLEET).values():
        members = [calls[a] for a in accounts if calls[a]]
        assert len(members) == 12
        cards = [evs[0].get("payment_fingerprint") for evs in members]
        assert len(set(cards)) == len(cards) and None not in cards
        nets = [{slash24(e["client_ip"]) for e in evs} for evs in members]
        assert sum(bool(a & b) for a, b in itertools.combinations(nets, 2)) <= 1
        keys = [{e["api_key_id"] for e in evs} for evs in members]
        assert not any(a & b for a, b in itertools.combinations(keys, 2))
        # Their own user agents through their libraries' ordinary stacks (shared with everyone using them).
        assert len({e["user_agent"] for evs in members for e in evs}) >= 5
        assert all(e.get("tls_fingerprint", "") == client_of(e["user_agent"]).tls for evs in members for e in evs)
        # Their own prompts: no template, no prompt and no near-duplicate crosses from one member to another.
        assert min(closest_prompts(a, b) for a, b in itertools.combinations(members, 2)) > 8
        prompts = [{e["prompt_hash"] for e in evs} for evs in members]
        assert not any(a & b for a, b in itertools.combinations(prompts, 2))
        # What the campaign takes: reasoning over broad topics, long outputs.
        everything = [e for evs in members for e in evs]
        assert np.mean([e["elicits_reasoning"] for e in everything]) > 0.35
        assert len({e["topic"] for e in everything}) >= 10
        assert np.median([e["completion_tokens"] for e in everything if e["status"] == 200]) > 500


def test_a_companys_accounts_fire_together_on_its_cron(truth: dict[str, Label], calls: Accounts) -> None:
    companies = groups(truth, COMPANY)
    fired = {}
    for company, accounts in companies.items():
        counts = busy(calls, accounts)
        assert len(counts) >= len(accounts) - 1
        total = np.sum(counts, axis=0)
        ticks = total >= 0.01 * total.max()
        fired[company] = tuple(np.flatnonzero(ticks).tolist())
        assert 2 <= len(fired[company]) <= 2 * MINUTES // 4  # runs of a minute or two every 4+ minutes
        starts = [m for m in fired[company] if m - 1 not in fired[company]]
        assert len(set(np.diff(starts).tolist())) == 1  # a run every period minutes
        for c in counts:
            assert c[~ticks].sum() < 0.01 * c.sum()  # (next to) nothing between runs
            assert c[starts].min() > 0  # every account calls in every run
        assert np.min(correlations(counts)) > 0.95
    assert len(set(fired.values())) == len(fired)  # each company on a schedule of its own


def test_cron_rhythm_fires_at_the_same_minutes_every_hour() -> None:
    cron = ARCHETYPES[COMPANY].cron
    assert cron is not None
    seen = set()
    for seed in range(20):
        rhythm = cron_rhythm(np.random.default_rng(seed), cron)
        assert rhythm.curve.size * rhythm.bin_s == HOUR_S and rhythm.anchor_s == 0.0
        on = rhythm.curve > 1.0
        starts = np.flatnonzero(on & ~np.roll(on, 1)) * rhythm.bin_s
        assert np.all(starts % MINUTE_S == 0)  # runs start on the minute
        period = set(np.diff(starts).tolist())
        assert len(period) == 1 and cron.period_min[0] * MINUTE_S <= period.pop() <= cron.period_min[1] * MINUTE_S
        assert starts[0] < cron.period_min[1] * MINUTE_S
        run_s = on.sum() * rhythm.bin_s / starts.size
        assert cron.burst_s[0] - rhythm.bin_s <= run_s <= cron.burst_s[1] + rhythm.bin_s
        seen.add(tuple(starts.tolist()))
        # Whenever the scenario starts, load grows only in the runs, at those wall-clock minutes of every hour.
        start_s = 1_770_890_400.0 + 7 + seed * 613
        t = np.arange(0.0, 3 * HOUR_S, 5.0) - start_s % 5.0  # 5-second steps on the wall clock
        growth = np.diff(rhythm.clock(start_s).load(t))
        running = growth > 1.0
        assert growth[running].sum() > 0.999 * growth.sum()
        wall = (start_s + t[:-1]) % HOUR_S
        assert set((wall[running] // rhythm.bin_s).astype(int).tolist()) == set(np.flatnonzero(on).tolist())
    assert len(seen) >= 10


def test_a_company_shares_card_network_agent_and_templates_but_takes_little(
        truth: dict[str, Label], calls: Accounts) -> None:
    everyone_else = {e.get("payment_fingerprint") for a, evs in calls.items() if truth[a].archetype != COMPANY
                     for e in evs[:1]}
    for accounts in groups(truth, COMPANY).values():
        company = [e for a in accounts for e in calls[a]]
        cards = {e.get("payment_fingerprint") for e in company}
        assert len(cards) == 1 and None not in cards and not cards & everyone_else
        assert len({e["user_agent"] for e in company}) == 1
        assert len({e["asn"] for e in company if "asn" in e}) == 1  # the company's cloud
        # The company's templates: every two of its accounts send near-duplicates.
        assert max(closest_prompts(calls[a][:200], calls[b][:200]) for a, b in itertools.combinations(accounts, 2)) <= 8
        ok = [e for e in company if e["status"] == 200]
        assert sum(e["completion_tokens"] for e in ok) < 0.1 * sum(e["prompt_tokens"] for e in ok)
        assert not any(e["elicits_reasoning"] or e["logprobs"] or e.get("reasoning_tokens") for e in company)
        assert {e["topic"] for e in company} <= {"classification", "summarization", "data_extraction"}
        assert len({e["topic"] for e in company}) <= 2


def test_groups_are_deterministic_and_their_rhythms_independent_of_the_rest_of_the_mix() -> None:
    short = CONFIG.model_copy(update={"duration_s": 300})
    first = b"".join(orjson.dumps(e) for e in generate(short))
    assert first == b"".join(orjson.dumps(e) for e in generate(short))

    def rhythms(config: ScenarioConfig) -> dict[str, bytes]:
        return {a.fleet_id or a.company_id or "": a.rhythm.curve.tobytes() for a in population(config).accounts
                if a.rhythm is not None}

    base = rhythms(CONFIG)
    assert len(base) == len(groups(labels(CONFIG), FLEET)) + len(groups(labels(CONFIG), COMPANY))
    # The same groups with different neighbours: each rhythm is keyed by its group's id, not drawn in turn.
    others = rhythms(CONFIG.model_copy(update={"mix": {**MIX, "chat_app": 9, "hobbyist": 3}}))
    assert {g: others[g] for g in others.keys() & base.keys()} == {g: base[g] for g in others.keys() & base.keys()}
    assert rhythms(CONFIG.model_copy(update={"seed": 25})).keys().isdisjoint(base)

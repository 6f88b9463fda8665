"""The load generator: determinism, contract conformance, ground truth and archetype signatures."""

from __future__ import annotations

import itertools
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from jobs.loadgen import (
    ARCHETYPES,
    ATTACKS,
    BENIGN,
    DEFAULT_MIX,
    GeneratedEvent,
    KafkaUnavailableError,
    Label,
    ScenarioConfig,
    generate,
    labels,
    produce_kafka,
    run,
    write_jsonl,
    write_labels,
)
from jobs.loadgen.archetypes import SCRIPT_AGENTS
from jobs.loadgen.clients import Client, client_of, fleet_client
from jobs.loadgen.sink import Pacer, event_time_ms
from pipeline.kernels.layout import TINY_MAX_TOKENS, WIDE_LOGIT_BIAS
from schemas.event import ApiCallEvent
from tests.support.generated import near_duplicate_share, slash24

Grouped = dict[str, list[GeneratedEvent]]


# Four hours of the default mix from 10:00 UTC: every archetype is awake somewhere.
CONFIG = ScenarioConfig(seed=12, start_ms=1_770_890_400_000, duration_s=4 * 3600, rate_eps=5)
SMALL = ScenarioConfig(seed=3, duration_s=300, rate_eps=50)


@pytest.fixture(scope="module")
def events() -> list[GeneratedEvent]:
    return list(generate(CONFIG))


@pytest.fixture(scope="module")
def truth() -> dict[str, Label]:
    return labels(CONFIG)


@pytest.fixture(scope="module")
def by_archetype(events: list[GeneratedEvent], truth: dict[str, Label]) -> dict[str, list[GeneratedEvent]]:
    grouped: dict[str, list[GeneratedEvent]] = defaultdict(list)
    for e in events:
        grouped[truth[e["account_id"]].archetype].append(e)
    return grouped


def by_account(events: list[GeneratedEvent]) -> dict[str, list[GeneratedEvent]]:
    grouped: dict[str, list[GeneratedEvent]] = defaultdict(list)
    for e in events:
        grouped[e["account_id"]].append(e)
    return grouped


def share(events: list[GeneratedEvent], predicate: Callable[[GeneratedEvent], bool]) -> float:
    return sum(1 for e in events if predicate(e)) / len(events)


def gap_cv(events: list[GeneratedEvent]) -> float:
    gaps = np.diff(np.sort([event_time_ms(e) for e in events]).astype(np.float64))
    return float(gaps.std() / gaps.mean())


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_bytes() -> None:
    jittered = SMALL.model_copy(update={"jitter_fraction": 0.05, "jitter_max_s": 20, "rfc3339_fraction": 0.1})
    for config in (SMALL, jittered):
        first = b"".join(orjson.dumps(e) for e in generate(config))
        second = b"".join(orjson.dumps(e) for e in generate(config))
        assert first == second


def test_different_seed_gives_different_traffic() -> None:
    a = list(generate(SMALL))
    b = list(generate(SMALL.model_copy(update={"seed": 4})))
    assert {e["account_id"] for e in a}.isdisjoint({e["account_id"] for e in b})
    assert {e["prompt_hash"] for e in a}.isdisjoint({e["prompt_hash"] for e in b})


# ------------------------------------------------------------------ the contract


def test_every_event_validates_against_the_contract(events: list[GeneratedEvent], truth: dict[str, Label]) -> None:
    sample = events[:: max(1, len(events) // 25_000)]
    assert len(sample) >= 20_000
    assert {truth[e["account_id"]].archetype for e in sample} == set(DEFAULT_MIX)
    known = set(ApiCallEvent.model_fields)
    for e in sample:
        assert set(e) <= known, set(e) - known
        parsed = ApiCallEvent.model_validate_json(orjson.dumps(e))
        # Nothing was coerced or normalised on the way in: the generator sends canonical values.
        assert parsed.ts == e["ts"]
        assert parsed.client_ip == e["client_ip"]
        assert parsed.prompt_hash == e["prompt_hash"]


def test_rfc3339_timestamps_validate_to_the_same_instant() -> None:
    config = SMALL.model_copy(update={"rfc3339_fraction": 0.2})
    out = list(generate(config))
    plain = list(generate(SMALL))  # same calls in the same order, every ts an integer
    assert len(out) == len(plain)
    pairs = [(e, p) for e, p in zip(out, plain, strict=True) if isinstance(e["ts"], str)]
    assert 0.15 < len(pairs) / len(out) < 0.25
    for e, p in pairs[:2000]:
        assert e["ts"].endswith("Z")
        assert ApiCallEvent.model_validate_json(orjson.dumps(e)).ts == p["ts"]


def test_config_rejects_unknown_archetypes_and_empty_mixes() -> None:
    with pytest.raises(ValidationError, match="unknown archetypes"):
        ScenarioConfig(mix={"chat_app": 3, "botnet": 2})
    with pytest.raises(ValidationError, match="at least one account"):
        ScenarioConfig(mix={"chat_app": 0})


# ------------------------------------------------------------------ ground truth


def test_labels_cover_every_account_and_match_the_mix(events: list[GeneratedEvent], truth: dict[str, Label]) -> None:
    assert {e["account_id"] for e in events} <= set(truth)
    assert Counter(label.archetype for label in truth.values()) == Counter(DEFAULT_MIX)
    assert set(DEFAULT_MIX) == set(ARCHETYPES)
    assert {label.archetype for label in truth.values() if label.is_attack} == set(ATTACKS) & set(DEFAULT_MIX)
    seen = {truth[e["account_id"]].archetype for e in events}
    assert set(DEFAULT_MIX) <= seen and set(BENIGN) <= seen
    fleets = Counter(label.fleet_id for label in truth.values() if label.fleet_id)
    fleet_archetypes = {name for name in DEFAULT_MIX if ARCHETYPES[name].fleet}
    assert fleet_archetypes == {"hydra_fleet", "template_fleet", "synchronised_fleet", "low_and_slow_fleet"}
    # Fleets of the configured size, and the low-and-slow campaign: all its accounts one fleet.
    sized = fleet_archetypes - {"low_and_slow_fleet"}
    assert sorted(fleets.values()) == ([CONFIG.fleet_size] * (sum(DEFAULT_MIX[n] for n in sized) // CONFIG.fleet_size)
                                       + [DEFAULT_MIX["low_and_slow_fleet"]])
    assert all((label.fleet_id is not None) == (label.archetype in fleet_archetypes) for label in truth.values())
    # A company's accounts are a company, not a fleet: their group is a label of its own.
    assert all((label.company_id is not None) == (label.archetype == "cron_company") for label in truth.values())


def test_fleet_archetypes_split_into_fleets_of_the_configured_size() -> None:
    config = ScenarioConfig(mix={"hydra_fleet": 12, "chat_app": 2}, fleet_size=5, duration_s=60)
    fleets = Counter(label.fleet_id for label in labels(config).values() if label.fleet_id)
    assert sorted(fleets.values()) == [2, 5, 5]


def test_write_labels_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "out" / "labels.json"
    assert write_labels(SMALL, path) == sum(DEFAULT_MIX.values())
    loaded = orjson.loads(path.read_bytes())
    expected = labels(SMALL)
    assert set(loaded) == set(expected)
    for account_id, label in expected.items():
        assert loaded[account_id] == {
            "archetype": label.archetype,
            "is_attack": label.is_attack,
            "fleet_id": label.fleet_id,
            "reseller_id": label.reseller_id,
            "company_id": label.company_id,
        }


# ------------------------------------------------------------------ rate, window, order


def test_rate_and_window_are_as_configured(events: list[GeneratedEvent]) -> None:
    assert abs(len(events) / CONFIG.expected_events - 1) < 0.15
    ts = [e["ts"] for e in events]
    assert min(ts) >= CONFIG.start_ms
    assert max(ts) < CONFIG.start_ms + CONFIG.duration_s * 1000
    # Traffic is spread over the window, not bunched at one end.
    quarters = np.histogram(ts, bins=4, range=(CONFIG.start_ms, CONFIG.start_ms + CONFIG.duration_s * 1000))[0]
    assert quarters.min() > 0.15 * len(events)


def test_events_are_in_time_order_with_unique_ids(events: list[GeneratedEvent]) -> None:
    ts = np.array([e["ts"] for e in events])
    assert np.all(np.diff(ts) >= 0)
    assert len({e["event_id"] for e in events}) == len(events)


def test_jitter_delays_the_configured_share_by_at_most_the_bound() -> None:
    config = SMALL.model_copy(update={"jitter_fraction": 0.05, "jitter_max_s": 20.0})
    late = list(generate(config))
    ts = np.array([e["ts"] for e in late])
    behind = np.maximum.accumulate(ts) - ts
    assert 0.03 < np.mean(behind > 0) < 0.06
    assert behind.max() <= 20_000
    # Only delivery changes: the same calls happen at the same event times.
    def calls(evs: Iterable[GeneratedEvent]) -> list[tuple[str, int, str]]:
        return sorted((e["account_id"], e["ts"], e["prompt_hash"]) for e in evs)

    assert calls(late) == calls(generate(SMALL))
    assert len({e["event_id"] for e in late}) == len(late)


# ------------------------------------------------------------------ archetype signatures


def test_reasoning_harvester_asks_for_reasoning_far_more_than_chat(by_archetype: Grouped) -> None:
    harvester, chat = by_archetype["reasoning_harvester"], by_archetype["chat_app"]
    assert share(harvester, lambda e: e["elicits_reasoning"]) > 0.5
    assert share(harvester, lambda e: e["elicits_reasoning"]) > 4 * share(chat, lambda e: e["elicits_reasoning"])
    assert np.mean([e["reasoning_tokens"] for e in harvester]) > 5 * np.mean([e["reasoning_tokens"] for e in chat])
    assert np.median([e["completion_tokens"] for e in harvester]) > 2 * np.median(
        [e["completion_tokens"] for e in chat]
    )


def test_hydra_fleet_shares_payment_prefixes_agent_and_stays_quiet(by_archetype: Grouped) -> None:
    fleet = by_account(by_archetype["hydra_fleet"])
    assert len(fleet) == DEFAULT_MIX["hydra_fleet"]
    payments = {e["payment_fingerprint"] for evs in fleet.values() for e in evs}
    prefixes = {slash24(e["client_ip"]) for evs in fleet.values() for e in evs}
    agents = {e["user_agent"] for evs in fleet.values() for e in evs}
    assert len(payments) <= 3 and len(prefixes) <= 3 and len(agents) == 1
    # Each member is smaller than a typical chat app; together they are not.
    chat = [len(evs) for evs in by_account(by_archetype["chat_app"]).values()]
    assert max(len(evs) for evs in fleet.values()) < np.median(chat)


def test_benign_accounts_rarely_share_payment_and_never_with_attackers(truth: dict, events: list) -> None:
    # Except behind a reseller, whose card pays for customers and distillers alike (test_loadgen_reseller.py),
    # and a company's, which pays for all its accounts (test_loadgen_groups.py).
    owners: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if "payment_fingerprint" in e:
            owners[e["payment_fingerprint"]].add(e["account_id"])
    routers = [a for a in owners.values() if all(truth[x].reseller_id for x in a)]
    assert len(routers) == 1 and {truth[x].is_attack for x in routers[0]} == {True, False}
    companies = [a for a in owners.values() if len({truth[x].company_id for x in a}) == 1 and truth[min(a)].company_id]
    assert len(companies) == len({label.company_id for label in truth.values() if label.company_id})
    shared = [accounts for accounts in owners.values() if len(accounts) > 1 and accounts not in routers + companies]
    benign_shared = [a for a in shared if not any(truth[x].is_attack for x in a)]
    assert benign_shared, "sibling organisations paying with one card are a hard negative"
    assert all(len(a) == 2 for a in benign_shared)
    assert all(len({truth[x].is_attack for x in a}) == 1 for a in shared)


def test_programmatic_scraper_is_metronome_regular_and_never_rests(by_archetype: Grouped) -> None:
    for evs in by_account(by_archetype["programmatic_scraper"]).values():
        assert gap_cv(evs) < 0.3
        gaps = np.diff([e["ts"] for e in evs])
        assert gaps.max() < 3 * gaps.mean()
    human = [gap_cv(evs) for evs in by_account(by_archetype["chat_app"]).values() if len(evs) > 50]
    assert np.median(human) > 0.8


def test_logprob_miner_probes_distributions(by_archetype: Grouped) -> None:
    miner = by_archetype["logprob_miner"]
    assert share(miner, lambda e: e.get("top_logprobs") == 20) > 0.6
    assert share(miner, lambda e: e["logit_bias_count"] > 0) > 0.3
    assert share(miner, lambda e: e["n"] > 1) > 0.4
    assert len({e.get("temperature") for e in miner}) >= 6
    for name in BENIGN:
        assert share(by_archetype[name], lambda e: e.get("top_logprobs") == 20) == 0


def test_capability_sweeper_prompts_are_distinct_but_templated(by_archetype: Grouped) -> None:
    for evs in by_account(by_archetype["capability_sweeper"]).values():
        assert len({e["prompt_hash"] for e in evs}) / len(evs) > 0.95
        assert near_duplicate_share(evs) > 0.8
        assert len({e["topic"] for e in evs}) == 1
    for evs in by_account(by_archetype["proxy_router"]).values():
        assert near_duplicate_share(evs) < 0.3


def test_proxy_router_rotates_through_many_exits(by_archetype: Grouped) -> None:
    for evs in by_account(by_archetype["proxy_router"]).values():
        assert len({e["client_ip"] for e in evs}) > 100
        assert len({e["country"] for e in evs if "country" in e}) > 10
        assert {"proxy", "vpn"} <= {e["network_type"] for e in evs}
        assert len({e["api_key_id"] for e in evs}) >= 6
    for evs in by_account(by_archetype["chat_app"]).values():
        assert len({e["client_ip"] for e in evs}) <= 6


def test_eval_harness_reruns_a_fixed_prompt_set() -> None:
    # A day of two harness accounts: each runs its benchmark set many times over.
    config = ScenarioConfig(seed=5, mix={"eval_harness": 2}, duration_s=86_400, rate_eps=0.5)
    harness = list(generate(config))
    for evs in by_account(harness).values():
        distinct = len({e["prompt_hash"] for e in evs})
        assert distinct <= ARCHETYPES["eval_harness"].prompts.pool[1]
        assert len(evs) > 3 * distinct
        assert share(evs, lambda e: e.get("temperature") == 0.0) > 0.7
    assert share(harness, lambda e: e["n"] > 1) > 0.05
    assert share(harness, lambda e: e["elicits_reasoning"]) > 0.1


def test_benign_lookalikes_overlap_attack_features(by_archetype: Grouped) -> None:
    classifier = by_archetype["classifier_pipeline"]
    assert share([e for e in classifier if "temperature" in e], lambda e: e["temperature"] == 0.0) > 0.95
    assert max(e["completion_tokens"] for e in classifier) <= 16
    assert share(classifier, lambda e: e["logit_bias_count"] > 0) > 0.2
    assert near_duplicate_share(classifier) > 0.8
    summarizer = by_archetype["batch_summarizer"]
    assert np.median([e["prompt_tokens"] for e in summarizer]) > 5 * np.median(
        [e["completion_tokens"] for e in summarizer if e["status"] == 200]
    )


# ------------------------------------------------------------------ sinks


def test_write_jsonl_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "events.jsonl"
    expected = list(generate(SMALL))
    assert write_jsonl(iter(expected), path) == len(expected)
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == expected


def test_run_writes_a_file_and_needs_exactly_one_target(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    count = run(SMALL, out=path, bootstrap=None, topic="api-calls", speedup=None)
    assert count == len(path.read_bytes().splitlines()) == sum(1 for _ in generate(SMALL))
    with pytest.raises(ValueError, match="exactly one"):
        run(SMALL, out=path, bootstrap="127.0.0.1:9092", topic="api-calls", speedup=None)
    with pytest.raises(ValueError, match="exactly one"):
        run(SMALL, out=None, bootstrap=None, topic="api-calls", speedup=None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_pacer_keeps_event_time_speedup() -> None:
    clock = FakeClock()
    pacer = Pacer(speedup=60.0, rate_limit_eps=None, clock=clock)
    start = 1_770_854_400_000
    for i in range(121):  # one event per event-time second for two minutes
        clock.sleep(pacer.delay(start + i * 1000))
    assert clock.now - 100.0 == pytest.approx(2.0, abs=0.01)
    assert pacer.delay(start + 30_000) == 0.0  # a late event does not pull the schedule back


def test_pacer_rate_limit() -> None:
    clock = FakeClock()
    pacer = Pacer(speedup=None, rate_limit_eps=100.0, clock=clock)
    for _ in range(51):
        clock.sleep(pacer.delay(1_770_854_400_000))
    assert clock.now - 100.0 == pytest.approx(0.5, abs=0.01)


def test_event_time_ms_reads_both_formats() -> None:
    assert event_time_ms({"ts": 1_770_854_400_123}) == 1_770_854_400_123
    assert event_time_ms({"ts": "2026-02-12T00:00:00.123Z"}) == 1_770_854_400_123
    assert event_time_ms({"ts": "2026-02-12T01:00:00.123+01:00"}) == 1_770_854_400_123


def test_produce_kafka_fails_fast_without_a_broker() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(KafkaUnavailableError, match=f"127.0.0.1:{port}"):
        produce_kafka(generate(SMALL), f"127.0.0.1:{port}", "api-calls", connect_timeout_s=1.0)
    assert time.monotonic() - started < 10


def test_logit_stealer_biases_hundreds_of_tokens_and_calibration_a_few(by_archetype: Grouped) -> None:
    # Parameter stealing (Carlini et al. 2024) against its hard negative, a calibrated classifier:
    # the same call shape (max_tokens 1, logprobs, logit bias), told apart by how many ids are biased.
    tiny = lambda e: 0 < e.get("max_tokens", 0) <= TINY_MAX_TOKENS  # noqa: E731
    stealer = by_archetype["logit_stealer"]
    assert share(stealer, lambda e: e["logit_bias_count"] >= WIDE_LOGIT_BIAS) > 0.9
    assert share(stealer, tiny) > 0.9
    assert all(gap_cv(evs) < 0.4 for evs in by_account(stealer).values())  # machine-paced
    calibrator = by_archetype["label_calibrator"]
    assert share(calibrator, lambda e: 2 <= e["logit_bias_count"] <= 10) == 1.0
    assert share(calibrator, tiny) > 0.9 and share(calibrator, lambda e: e.get("logprobs", False)) > 0.9
    for name in BENIGN:
        assert max(e["logit_bias_count"] for e in by_archetype[name]) < WIDE_LOGIT_BIAS, name


def test_nightly_summarizer_is_one_template_over_unique_long_inputs(by_archetype: Grouped) -> None:
    for evs in by_account(by_archetype["nightly_summarizer"]).values():
        assert len({e["prompt_hash"] for e in evs}) / len(evs) > 0.95
        assert near_duplicate_share(evs) > 0.8
        # Inputs an order of magnitude longer than outputs (each account's template draws its own length).
        assert np.median([e["prompt_tokens"] for e in evs]) > 8 * np.median([e["completion_tokens"] for e in evs])


# --- client stacks (jobs/loadgen/clients.py) ------------------------------------------------


def _stacks(events: Iterable[GeneratedEvent]) -> set[tuple[str, str]]:
    return {(e.get("tls_fingerprint", ""), e.get("http2_fingerprint", "")) for e in events}


def test_a_library_sends_one_stack_whoever_uses_it(events: list[GeneratedEvent], truth: dict[str, Label]) -> None:
    httpx = [e for e in events if e["user_agent"] == "python-httpx/0.27.0" and truth[e["account_id"]].fleet_id is None]
    assert len({e["account_id"] for e in httpx}) >= 3
    assert _stacks(httpx) == {(client_of("python-httpx/0.27.0").tls, "")}


def test_a_fleet_shares_its_own_stack_and_no_one_else_has_it(
        events: list[GeneratedEvent], truth: dict[str, Label]) -> None:
    # A synchronised fleet's members call through their own libraries (tests/jobs/test_loadgen_groups.py).
    fleets: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for e in events:
        label = truth[e["account_id"]]
        if label.fleet_id is not None and ARCHETYPES[label.archetype].campaign is None:
            fleets[label.fleet_id] |= _stacks([e])
    assert len(fleets) >= 2 and all(len(stacks) == 1 for stacks in fleets.values())
    outside = _stacks(e for e in events if truth[e["account_id"]].fleet_id not in fleets)
    assert not set().union(*fleets.values()) & outside


def test_browsers_agree_with_their_handshake_and_posers_keep_their_library(
        events: list[GeneratedEvent], truth: dict[str, Label]) -> None:
    browser_events = [e for e in events if e["user_agent"].startswith("Mozilla/5.0")]
    honest = [e for e in browser_events if not truth[e["account_id"]].is_attack]
    posing = [e for e in browser_events if truth[e["account_id"]].is_attack]
    assert honest and posing
    assert all(e["http2_fingerprint"] == client_of(e["user_agent"]).h2 and "h2_" in e["tls_fingerprint"]
               for e in honest)
    assert {e.get("tls_fingerprint", "") for e in posing} <= {client_of(a).tls for a in SCRIPT_AGENTS}


def test_a_client_without_a_known_stack_sends_no_fingerprint() -> None:
    assert client_of("Ruby") == Client("Ruby", "", "")
    assert fleet_client("x", "fleet-1") == fleet_client("x", "fleet-1") != fleet_client("x", "fleet-2")


def test_a_template_fleet_shares_its_templates_and_stack_not_its_cards_or_networks(
        events: list[GeneratedEvent], truth: dict[str, Label]) -> None:
    members: dict[str, dict[str, list[GeneratedEvent]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        label = truth[e["account_id"]]
        if label.archetype == "template_fleet":
            members[label.fleet_id or ""][e["account_id"]].append(e)
    assert len(members) == DEFAULT_MIX["template_fleet"] // CONFIG.fleet_size
    for accounts in members.values():
        cards = [e.get("payment_fingerprint") for evs in accounts.values() for e in evs[:1]]
        assert len({c for c in cards if c}) == len([c for c in cards if c]) > 3  # each its own card
        nets = [{slash24(e["client_ip"]) for e in evs} for evs in accounts.values()]
        assert sum(len(a & b) > 0 for a, b in itertools.combinations(nets, 2)) <= 2  # own networks
        assert len(_stacks(e for evs in accounts.values() for e in evs)) == 1
        assert len({e["user_agent"] for evs in accounts.values() for e in evs}) > 2
        # Their prompts are the campaign's: most member pairs sent near-duplicates (a few bits apart).
        hashes = [{int(e["prompt_simhash"], 16) for e in evs} for evs in accounts.values()]
        pairs = list(itertools.combinations(hashes, 2))
        near = sum(any((x ^ y).bit_count() <= 8 for x in a for y in b) for a, b in pairs)
        assert near >= len(pairs) // 2, (near, len(pairs))

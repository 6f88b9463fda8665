"""The low-and-slow fleet: hundreds of quiet accounts, each under every per-account threshold, tied only by the
campaign's prompt templates and its scraping stack (issue 17: 16M exchanges over 24,000 accounts)."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from jobs.cli import main as cli_main
from jobs.eval.run import EvalOptions, scenario_config, varied_options
from jobs.eval.scenario import scaled_mix
from jobs.loadgen import ARCHETYPES, ATTACKS, DEFAULT_MIX, GeneratedEvent, ScenarioConfig, generate, labels, scenario
from jobs.loadgen.__main__ import main as loadgen_main
from jobs.loadgen.archetypes import QUIET_PEAK_PER_HOUR
from jobs.loadgen.clients import client_of
from jobs.loadgen.population import Label
from jobs.loadgen.scenario import population
from jobs.loadgen.variation import RANGES, mix_factors, varied_archetypes
from pipeline.linking.config import load_linking_config
from pipeline.scoring.config import load_scoring_config
from tests.support.generated import slash24

FLEET = "low_and_slow_fleet"
MIX = {FLEET: 150, "template_fleet": 12, "coding_assistant": 4, "chat_app": 6, "hobbyist": 30}
START_MS = 1_770_876_000_000  # 2026-02-12T06:00:00Z, the eval's start
HOUR_MS = 3_600_000
# The eval's six hours; at 3 events/s the rest of the mix sends about 60,000 calls.
CONFIG = ScenarioConfig(seed=17, start_ms=START_MS, duration_s=6 * 3600, rate_eps=3, mix=MIX)
GATE = load_scoring_config().volume_gate.high  # calls in an hour at which an account's signals count in full
Accounts = dict[str, list[GeneratedEvent]]


@pytest.fixture(scope="module")
def truth() -> dict[str, Label]:
    return labels(CONFIG)


@pytest.fixture(scope="module")
def events() -> list[GeneratedEvent]:
    return list(generate(CONFIG))


@pytest.fixture(scope="module")
def calls(events: list[GeneratedEvent]) -> Accounts:
    grouped: Accounts = defaultdict(list)
    for e in events:
        grouped[e["account_id"]].append(e)
    return grouped


def members_of(truth: dict[str, Label]) -> list[str]:
    return sorted(a for a, label in truth.items() if label.archetype == FLEET)


def simhashes(evs: list[GeneratedEvent]) -> np.ndarray:
    return np.array([int(e["prompt_simhash"], 16) for e in evs], dtype=np.uint64)


def near_pairs(groups: list[list[GeneratedEvent]], max_bits: int) -> np.ndarray:
    """Which groups sent a prompt within ``max_bits`` of one of another group's (a group x group matrix)."""
    hashes = np.concatenate([simhashes(g) for g in groups])
    owner = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    near = (np.bitwise_count(hashes[:, None] ^ hashes[None, :]) <= max_bits).astype(np.float64)
    onehot = np.eye(len(groups))[owner]
    shared = onehot.T @ near @ onehot > 0
    np.fill_diagonal(shared, False)
    return shared


def test_one_fleet_larger_than_the_template_cap_at_the_eval_scale() -> None:
    spec = ARCHETYPES[FLEET]
    assert FLEET in ATTACKS and spec.fleet and spec.fleet_own_infra and spec.one_fleet
    assert spec.calls_per_min is not None and spec.volume == 0
    cap = load_linking_config().kinds["tpl"].cap
    eval_config = scenario_config(EvalOptions())  # the default eval: the default mix at scale 2
    assert eval_config.mix == scaled_mix(2)
    size = eval_config.mix[FLEET]
    assert size == 2 * DEFAULT_MIX[FLEET] == 200 > cap
    eval_labels = labels(eval_config)
    fleets = {label.fleet_id for label in eval_labels.values() if label.archetype == FLEET}
    assert len(fleets) == 1 and None not in fleets
    assert sum(label.archetype == FLEET for label in eval_labels.values()) == size
    # Every other fleet keeps fleet_size: only this archetype is one fleet.
    others = defaultdict(int)
    for label in eval_labels.values():
        if label.fleet_id and label.archetype != FLEET:
            others[label.fleet_id] += 1
    assert set(others.values()) == {ScenarioConfig().fleet_size}


def test_members_share_the_campaigns_templates(truth: dict[str, Label], calls: Accounts) -> None:
    members = members_of(truth)
    assert len(members) == MIX[FLEET] and all(calls[a] for a in members)
    max_bits = load_linking_config().template.max_hamming
    shared = near_pairs([calls[a] for a in members[:80]], max_bits)
    pairs = shared[np.triu_indices(len(shared), 1)]
    assert pairs.mean() > 0.95, pairs.mean()  # nearly every two members sent near-duplicates
    # Each member's prompts are mostly the campaign's templates: near-duplicates of other members' prompts.
    fleet_hashes = simhashes([e for a in members for e in calls[a]])
    templated = []
    for account in members[:40]:
        own = simhashes(calls[account])
        others = simhashes([e for a in members if a != account for e in calls[a]])
        templated.append(np.bitwise_count(own[:, None] ^ others[None, :]).min(axis=1) <= max_bits)
    assert np.concatenate(templated).mean() > 0.7
    assert min(t.mean() for t in templated if t.size >= 30) > 0.5
    # Nobody outside the fleet sends them.
    outside = simhashes([e for a, evs in calls.items() if truth[a].archetype != FLEET for e in evs])
    chunks = np.array_split(outside, max(1, outside.size // 4000))
    assert all(np.bitwise_count(c[:, None] ^ fleet_hashes[None, :]).min() > max_bits for c in chunks)
    assert len({e["prompt_hash"] for a in members for e in calls[a]}) > 0.95 * len(fleet_hashes)  # distinct texts


def test_members_share_one_scraping_stack_and_nothing_else(truth: dict[str, Label], calls: Accounts) -> None:
    members = [calls[a] for a in members_of(truth)]
    everything = [e for evs in members for e in evs]
    outside = [e for a, evs in calls.items() if truth[a].archetype != FLEET for e in evs]
    # One client stack (TLS and HTTP/2), the campaign's own: no library sends it, nobody outside has it.
    stacks = {(e["tls_fingerprint"], e["http2_fingerprint"]) for e in everything}
    assert len(stacks) == 1
    assert not stacks & {(e.get("tls_fingerprint"), e.get("http2_fingerprint")) for e in outside}
    assert all(e["tls_fingerprint"] != client_of(e["user_agent"]).tls for e in everything)
    # Their own cards, keys, addresses and user agents.
    cards = [{e.get("payment_fingerprint") for e in evs} for evs in members]
    assert all(len(c) == 1 and None not in c for c in cards)
    assert len(set().union(*cards)) == len(members)
    assert not set().union(*cards) & {e.get("payment_fingerprint") for e in outside}
    keys = [{e["api_key_id"] for e in evs} for evs in members]
    assert sum(len(k) for k in keys) == len(set().union(*keys))
    ips = [{e["client_ip"] for e in evs} for evs in members]
    assert sum(len(i) for i in ips) == len(set().union(*ips))
    nets = [{slash24(ip) for ip in i} for i in ips]
    pairs = list(itertools.combinations(nets, 2))
    assert sum(bool(a & b) for a, b in pairs) <= 0.002 * len(pairs)  # a chance meeting in a big ISP, rarely
    assert {e["network_type"] for e in everything} <= {"residential", "mobile", "business", "unknown"}
    agents = [e["user_agent"] for evs in members for e in evs[:1]]
    assert len(set(agents)) >= 10 and max(agents.count(a) for a in set(agents)) < 0.2 * len(agents)


def test_no_member_passes_the_volume_gates_calls_ramp(truth: dict[str, Label], calls: Accounts) -> None:
    assert GATE == 30
    per_minute = []
    for account in members_of(truth):
        ts = np.sort(np.array([e["ts"] for e in calls[account]], dtype=np.int64))
        hourly = np.bincount((ts - START_MS) // HOUR_MS, minlength=6)
        assert hourly.max() < GATE, (account, hourly)
        # Nor in any 60 minutes (the scoring's calls_1h slides).
        window = np.searchsorted(ts, ts + HOUR_MS) - np.arange(ts.size)
        assert window.max() < GATE
        per_minute.append(ts.size / (CONFIG.duration_s / 60))
    rates = np.array(per_minute)
    # Of the order of 0.05-0.3 calls a minute: about 20-100 calls each over six hours.
    assert rates.min() > 0.02 and rates.max() < 0.35 and 0.08 < rates.mean() < 0.2, rates
    assert np.percentile(rates, 90) > 2 * np.percentile(rates, 10)  # spread over the range


def test_members_keep_their_own_hours(truth: dict[str, Label], calls: Accounts) -> None:
    """No shared burst pattern: the members' calls per ten minutes do not move together."""
    counts = []
    for account in members_of(truth)[:60]:
        ts = np.array([e["ts"] for e in calls[account]], dtype=np.int64)
        counts.append(np.bincount((ts - START_MS) // 600_000, minlength=36)[:36].astype(np.float64))
    r = [np.corrcoef(a, b)[0, 1] for a, b in itertools.combinations(counts, 2)]
    assert abs(np.mean(r)) < 0.05 and np.percentile(r, 99) < 0.6


def test_what_the_campaign_takes(truth: dict[str, Label], calls: Accounts) -> None:
    everything = [e for a in members_of(truth) for e in calls[a]]
    assert np.mean([e["elicits_reasoning"] for e in everything]) > 0.4
    assert len({e["topic"] for e in everything}) >= 12  # a capability sweep over broad topics
    ok = [e for e in everything if e["status"] == 200]
    assert np.median([e["completion_tokens"] for e in ok]) > 500
    assert sum(e["completion_tokens"] + e.get("reasoning_tokens", 0) for e in ok) > 3 * sum(
        e["prompt_tokens"] for e in ok)


def test_the_rate_is_absolute_and_the_total_stays_rate_times_duration(
        truth: dict[str, Label], events: list[GeneratedEvent]) -> None:
    assert abs(len(events) / CONFIG.expected_events - 1) < 0.05
    fleet = sum(truth[e["account_id"]].archetype == FLEET for e in events)
    assert 0.04 < fleet / len(events) < 0.2  # 150 quiet accounts beside a tiny mix
    base = {a.account_id: a.rate for a in population(CONFIG).accounts}
    faster = {a.account_id: a.rate for a in population(CONFIG.model_copy(update={"rate_eps": 30})).accounts}
    quiet = set(members_of(truth))
    assert all(faster[a] == base[a] for a in quiet)  # the fleet does not follow the scenario's rate
    assert all(faster[a] > 10 * base[a] for a in base.keys() - quiet)  # the rest takes the other 27 events a second
    # Every member's busiest hour averages at most QUIET_PEAK_PER_HOUR calls, whatever its curve.
    for account in population(CONFIG).accounts:
        if account.archetype.name == FLEET:
            assert account.rate * 3600 * account.profile.max() <= QUIET_PEAK_PER_HOUR * (1 + 1e-9)
    with pytest.raises(ValueError, match="raise the rate"):
        population(CONFIG.model_copy(update={"rate_eps": 0.3}))  # 150 quiet accounts alone send more


def test_varied_fleets_move_widely_and_stay_quiet() -> None:
    spec = ARCHETYPES[FLEET]
    assert spec.calls_per_min is not None
    factors = [mix_factors(seed, [FLEET, "hobbyist"]) for seed in range(40)]
    sizes = [f[FLEET] for f in factors]
    assert all(1 / RANGES.one_fleet <= f <= RANGES.one_fleet for f in sizes)
    assert min(sizes) < 1 / RANGES.mix and max(sizes) > RANGES.mix  # wider than other archetypes' counts
    assert all(1 / RANGES.mix <= f["hobbyist"] <= RANGES.mix for f in factors)
    fastest = None
    for seed in range(12):
        varied = varied_archetypes(seed)[FLEET]
        assert varied.calls_per_min is not None and varied.one_fleet and varied.volume == 0
        lo, hi = varied.calls_per_min
        factor = lo / spec.calls_per_min[0]
        assert 1 / RANGES.volume <= factor <= RANGES.volume and hi / spec.calls_per_min[1] == pytest.approx(factor)
        if fastest is None or factor > fastest[1]:
            fastest = (seed, factor)
    assert fastest is not None and fastest[1] > 1.3
    # The fastest varied fleet still stays under the gate: its busiest hours are capped.
    config = ScenarioConfig(seed=fastest[0], start_ms=START_MS, duration_s=6 * 3600, rate_eps=2,
                            mix={FLEET: 60, "hobbyist": 20}, vary_seed=fastest[0])
    grouped: dict[str, list[int]] = defaultdict(list)
    for e in generate(config):
        grouped[e["account_id"]].append(e["ts"])
    quiet = [a for a, label in labels(config).items() if label.archetype == FLEET]
    for account in quiet:
        ts = np.sort(np.array(grouped[account], dtype=np.int64))
        assert (np.searchsorted(ts, ts + HOUR_MS) - np.arange(ts.size)).max() < GATE
    # The eval's varied runs: one fleet of a varied size, from x1/2 to x2 of the 200.
    opts = EvalOptions(events=6000, rate_eps=50.0, seed=7, vary_seeds=6, vary_events=3000)
    for run in varied_options(opts):
        size = scenario_config(run).mix[FLEET]
        assert 100 <= size <= 400


def test_deterministic_per_seed() -> None:
    short = CONFIG.model_copy(update={"duration_s": 1800})
    first = b"".join(orjson.dumps(e) for e in generate(short))
    assert first == b"".join(orjson.dumps(e) for e in generate(short))
    other = short.model_copy(update={"seed": 18})
    assert first != b"".join(orjson.dumps(e) for e in generate(other))
    fleet_ids = [{label.fleet_id for label in labels(c).values() if label.archetype == FLEET} for c in (short, other)]
    assert all(len(ids) == 1 for ids in fleet_ids) and fleet_ids[0] != fleet_ids[1]
    assert labels(short) == labels(CONFIG.model_copy(update={"duration_s": 1800}))


def test_the_command_line_sets_one_archetypes_count(tmp_path: Path) -> None:
    out, labels_path = tmp_path / "EVENTS.jsonl", tmp_path / "labels.json"
    done = CliRunner().invoke(loadgen_main, ["--out", str(out), "--labels", str(labels_path), "--rate", "20",
                                             "--duration", "600", "--mix-scale", "0.1",
                                             "--accounts", f"{FLEET}=500"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    written = orjson.loads(labels_path.read_bytes())
    expected = {**scaled_mix(0.1), FLEET: 500}
    assert len(written) == sum(expected.values())
    fleet = [v for v in written.values() if v["archetype"] == FLEET]
    assert len(fleet) == 500 and len({v["fleet_id"] for v in fleet}) == 1
    lines = out.read_bytes().splitlines()
    # Ten minutes of a tenth of the mix: a few dozen bursty accounts, so the total is rate x duration only roughly
    # (seeds 7-12: 0.63-0.95 of it); the fleet's absolute rates are met closely.
    assert 0.6 < len(lines) / 12_000 < 1.1
    config = ScenarioConfig(start_ms=START_MS, duration_s=600, rate_eps=20, mix=expected)
    quiet = [a for a in population(config).accounts if a.archetype.name == FLEET]
    due = sum(a.rate * a.clock(START_MS / 1000).load(np.array([600.0]))[0] for a in quiet)
    sent = sum(written[orjson.loads(line)["account_id"]]["archetype"] == FLEET for line in lines)
    assert 400 < due < 900 and abs(sent / due - 1) < 0.15, (sent, due)
    for bad, message in (([f"{FLEET}:5"], "NAME=COUNT"), (["botnet=3"], "unknown archetypes"),
                         ([f"{FLEET}=50000"], "raise the rate")):
        failed = CliRunner().invoke(loadgen_main, ["--out", str(out), "--rate", "20", "--duration", "600",
                                                   *itertools.chain.from_iterable(("--accounts", b) for b in bad)])
        assert failed.exit_code != 0 and message in failed.output, failed.output
    # Without --accounts, the default mix's fleet, scaled like the rest: a tenth of 100, still one fleet.
    done = CliRunner().invoke(loadgen_main, ["--out", str(out), "--labels", str(labels_path), "--rate", "20",
                                             "--duration", "60", "--mix-scale", "0.1"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    fleet = [v for v in orjson.loads(labels_path.read_bytes()).values() if v["archetype"] == FLEET]
    assert len(fleet) == 10 and len({v["fleet_id"] for v in fleet}) == 1


def test_distillwatch_takes_accounts_for_loadgen_and_eval(tmp_path: Path) -> None:
    out, labels_path = tmp_path / "EVENTS.jsonl", tmp_path / "labels.json"
    done = CliRunner().invoke(cli_main, ["loadgen", "--out", str(out), "--labels", str(labels_path), "--rate", "50",
                                         "--duration", "60", "--accounts", f"{FLEET}=70", "--accounts", "hobbyist=9"],
                              catch_exceptions=False)
    assert done.exit_code == 0, done.output
    written = Counter(v["archetype"] for v in orjson.loads(labels_path.read_bytes()).values())
    assert written == Counter({**DEFAULT_MIX, FLEET: 70, "hobbyist": 9})
    for command in (["loadgen", "--out", str(out)], ["eval", "--out-dir", str(tmp_path / "eval")]):
        failed = CliRunner().invoke(cli_main, [*command, "--accounts", "botnet=3"])
        assert failed.exit_code != 0 and "unknown archetypes ['botnet']" in failed.output, failed.output
        assert failed.exception is None or isinstance(failed.exception, SystemExit)  # a message, no traceback
    overfull = CliRunner().invoke(cli_main, ["eval", "--out-dir", str(tmp_path / "eval"), "--rate", "1", "--duration",
                                             "600", "--mix-scale", "0.1", "--accounts", f"{FLEET}=500"])
    assert overfull.exit_code != 0 and "raise the rate" in overfull.output, overfull.output
    assert overfull.exception is None or isinstance(overfull.exception, SystemExit)
    assert not (tmp_path / "eval").exists()  # refused before generating anything


def test_sparse_accounts_taken_by_epoch_give_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Taking the sparse accounts an epoch at a time changes nothing: the same calls, in (time, account) order."""
    monkeypatch.setattr(scenario, "_EVENTS_PER_SLICE", 2_000)  # slices of 50 s, epochs of 500 s: seven of them
    monkeypatch.setattr(scenario, "_EPOCH_EVENTS", 20_000)
    config = ScenarioConfig(seed=3, start_ms=START_MS, duration_s=3600, rate_eps=40, jitter_fraction=0.02,
                            jitter_max_s=200, rfc3339_fraction=0.05, mix={**MIX, "chat_app": 20})
    slice_s = scenario._EVENTS_PER_SLICE / config.rate_eps
    sparse = sum(a.rate * slice_s < scenario._SPARSE_CALLS_PER_SLICE for a in population(config).accounts)
    assert 150 < sparse < sum(config.mix.values())  # the fleet and more, beside accounts taken slice by slice
    by_epoch = b"".join(orjson.dumps(e) for e in generate(config))
    monkeypatch.setattr(scenario, "_SPARSE_CALLS_PER_SLICE", 0.0)  # every account slice by slice
    assert by_epoch == b"".join(orjson.dumps(e) for e in generate(config))

"""Varied archetypes (the generalisation check): deterministic, within the documented ranges, still themselves."""

from __future__ import annotations

import math
from dataclasses import fields
from itertools import islice

import pytest

from jobs.eval.run import EvalOptions, scenario_config, varied_options
from jobs.eval.scenario import OptionsError, scaled_mix
from jobs.loadgen.archetypes import ARCHETYPES, Archetype
from jobs.loadgen.scenario import ScenarioConfig, generate_batches, population
from jobs.loadgen.variation import RANGES, mix_factors, varied_archetypes, varied_fleet_size

SEEDS = range(12)


def _within(value: float, base: float, span: float) -> bool:
    return base / span * (1 - 1e-9) <= value <= base * span * (1 + 1e-9)


def _share_ok(value: float, base: float) -> bool:
    if base in (0.0, 1.0):
        return value == base  # a field never (or always) sent stays so
    shift = math.log(value / (1 - value)) - math.log(base / (1 - base))
    return 0.0 < value < 1.0 and abs(shift) <= RANGES.log_odds + 1e-9


def _count_ok(varied: tuple[int, int], base: tuple[int, int], span: float) -> bool:
    """Both ends scaled by at most ``span`` (rounded); a zero stays zero, a positive end stays >= 1."""
    if varied[0] > varied[1]:
        return False
    return all(v == 0 if b == 0 else max(1.0, b / span - 0.5) <= v <= b * span + 0.5
               for v, b in zip(varied, base, strict=True))


def test_the_same_seed_gives_the_same_archetypes_and_different_seeds_differ() -> None:
    assert varied_archetypes(3) == varied_archetypes(3)
    assert varied_archetypes(3) != varied_archetypes(4)
    assert varied_archetypes(3) != dict(ARCHETYPES)
    assert varied_fleet_size(3) == varied_fleet_size(3)
    assert mix_factors(3, ARCHETYPES) == mix_factors(3, ARCHETYPES) != mix_factors(4, ARCHETYPES)
    # Each archetype has its own stream: varying a subset leaves its members as in the whole.
    subset = {name: ARCHETYPES[name] for name in ("chat_app", "hobbyist")}
    assert varied_archetypes(3, base=subset)["chat_app"] != ARCHETYPES["chat_app"]


@pytest.mark.parametrize("seed", SEEDS)
def test_every_parameter_moves_within_its_range_and_the_markers_stay(seed: int) -> None:
    for name, v in varied_archetypes(seed).items():
        a = ARCHETYPES[name]
        assert (v.name, v.is_attack, v.fleet, v.summary) == (a.name, a.is_attack, a.fleet, a.summary)
        assert _within(v.volume, a.volume, RANGES.volume)
        assert _within(v.timing.regularity, a.timing.regularity, RANGES.regularity)
        assert len(v.timing.hourly) == 24 and min(v.timing.hourly) > 0
        assert (v.timing.batch is None) == (a.timing.batch is None)
        if a.timing.batch is not None and v.timing.batch is not None:
            assert _within(v.timing.batch[0], a.timing.batch[0], RANGES.batch * 1.001)
        assert 0 < v.timing.duty <= 1 and all(-12 <= tz <= 14 for tz in v.timing.tz)
        for field in ("prompt_tokens", "completion_tokens", "reasoning_tokens"):
            assert _within(getattr(v.content, field)[0], getattr(a.content, field)[0], RANGES.tokens)
            assert _within(getattr(v.content, field)[1], getattr(a.content, field)[1], RANGES.sigma)
        assert v.content.cot_boost >= 1.0 and set(v.content.topics) == set(a.content.topics)
        assert v.content.topics_per_account == a.content.topics_per_account
        for share_of, base_of in ((v.content, a.content), (v.sampling, a.sampling), (v.prompts, a.prompts),
                                  (v.network, a.network)):
            for f in fields(share_of):
                if f.name.endswith("share") or f.name in ("logprobs", "logit_bias", "stream", "payment_missing"):
                    assert _share_ok(getattr(share_of, f.name), getattr(base_of, f.name)), (name, f.name)
        for count_of, base_of, field in ((v.prompts, a.prompts, "pool"), (v.prompts, a.prompts, "templates"),
                                         (v.network, a.network, "prefixes"), (v.network, a.network, "ips"),
                                         (v.network, a.network, "keys"),
                                         (v.sampling, a.sampling, "logit_bias_range")):
            assert _count_ok(getattr(count_of, field), getattr(base_of, field), RANGES.counts), (name, field)
        assert _within(v.prompts.flip_bits or 1.0, a.prompts.flip_bits or 1.0, RANGES.flip_bits)
        # Which values a field takes, and which clients and networks, are kept; only weights move.
        assert [x for x, _ in v.sampling.max_tokens] == [x for x, _ in a.sampling.max_tokens]
        assert v.sampling.temperature_sweep == a.sampling.temperature_sweep
        assert v.prompts.sweep == a.prompts.sweep
        assert (v.network.agents, set(v.network.types)) == (a.network.agents, set(a.network.types))
        assert [s for s, _ in v.status] == [s for s, _ in a.status]


def test_a_campaigns_waves_and_a_companys_cron_move_within_their_ranges() -> None:
    fleet, company = ARCHETYPES["synchronised_fleet"].campaign, ARCHETYPES["cron_company"].cron
    assert fleet is not None and company is not None
    seen = set()
    for seed in SEEDS:
        varied = varied_archetypes(seed)
        waves, cron = varied["synchronised_fleet"].campaign, varied["cron_company"].cron
        assert waves is not None and cron is not None
        assert _count_ok(waves.active_min, fleet.active_min, RANGES.waves)
        assert _count_ok(waves.lull_min, fleet.lull_min, RANGES.waves)
        assert _within(waves.intensity_sigma, fleet.intensity_sigma, RANGES.sigma)
        assert _share_ok(waves.lull_level, fleet.lull_level)
        assert _count_ok(cron.accounts, company.accounts, RANGES.counts)
        assert _count_ok(cron.period_min, company.period_min, RANGES.cron)
        assert _count_ok(cron.burst_s, company.burst_s, RANGES.cron)
        seen.add((waves, cron))
    assert len(seen) == len(SEEDS)
    # A varied scenario runs on the varied ones.
    config = ScenarioConfig(seed=3, duration_s=600, rate_eps=20, mix={"synchronised_fleet": 4, "cron_company": 6},
                            vary_seed=3)
    accounts = population(config).accounts
    assert all(a.rhythm is not None for a in accounts)
    assert {a.archetype.cron for a in accounts if a.company_id} == {varied_archetypes(3)["cron_company"].cron}


def test_attacks_stay_recognisable() -> None:
    for seed in SEEDS:
        varied = varied_archetypes(seed)
        stealer: Archetype = varied["logit_stealer"]
        assert stealer.sampling.logit_bias_range[0] >= 60  # still biasing dozens to hundreds of token ids
        assert stealer.sampling.logit_bias > 0.9
        assert varied["reasoning_harvester"].content.reasoning_share > 0.5
        assert varied["programmatic_scraper"].timing.regularity > 30  # still a metronome
        assert varied["capability_sweeper"].prompts.template_share > 0.85


def test_a_varied_scenario_is_deterministic_and_uses_the_varied_archetypes() -> None:
    config = ScenarioConfig(seed=9, duration_s=60, rate_eps=100, mix=scaled_mix(0.1), vary_seed=9)
    assert config.fingerprint() != config.model_copy(update={"vary_seed": None}).fingerprint()
    varied = varied_archetypes(9)
    assert all(acc.archetype == varied[acc.archetype.name] for acc in population(config).accounts)
    plain = ScenarioConfig(seed=9, duration_s=60, rate_eps=100, mix=scaled_mix(0.1))
    assert all(acc.archetype is ARCHETYPES[acc.archetype.name] for acc in population(plain).accounts)
    first = [e for batch in islice(generate_batches(config), 3) for e in batch]
    again = [e for batch in islice(generate_batches(config), 3) for e in batch]
    assert first == again and first
    other = [e for batch in islice(generate_batches(config.model_copy(update={"vary_seed": 10})), 3) for e in batch]
    assert other != first


def test_eval_varied_runs_vary_seed_mix_and_fleet_size(tmp_path) -> None:
    opts = EvalOptions(out_dir=tmp_path, events=6000, rate_eps=50.0, seed=7, vary_seeds=3, vary_events=3000)
    runs = varied_options(opts)
    assert [(r.seed, r.vary_seed, r.events, r.vary_seeds) for r in runs] == [(s, s, 3000, 0) for s in (8, 9, 10)]
    assert [r.out_dir for r in runs] == [tmp_path / f"varied-{s}" for s in (8, 9, 10)]
    default = scenario_config(opts)
    assert default.vary_seed is None and default.mix == scaled_mix(opts.mix_scale)
    configs = [scenario_config(r) for r in runs]
    assert len({c.fingerprint() for c in configs}) == 3
    for c in configs:
        assert RANGES.fleet_size[0] <= c.fleet_size <= RANGES.fleet_size[1]
        assert set(c.mix) == set(default.mix) and c.mix != default.mix
        assert all(c.mix[n] >= (2 if ARCHETYPES[n].fleet else 1) for n in c.mix)
        assert all(_within(c.mix[n], default.mix[n], RANGES.mix * 1.5) for n in c.mix if default.mix[n] > 4)
    with pytest.raises(OptionsError):
        varied_options(EvalOptions(vary_seeds=-1))

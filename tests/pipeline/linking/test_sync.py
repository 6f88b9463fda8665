"""Timing correlation (``sync.find_groups``): synchronised fleets grouped, the hard negatives not, LSH vs all pairs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.linking.config import LinkingConfig, SyncConfig
from pipeline.linking.sync import band_bits, find_groups, normalise
from tests.pipeline.linking.sync_data import (
    START_MINUTE,
    bare_cron,
    cron_crowd,
    hourly_jobs,
    independent,
    round_robin_fleet,
    waves_fleet,
)


@pytest.fixture(scope="module")
def sync(config: LinkingConfig) -> SyncConfig:
    return config.sync


def span(sync: SyncConfig) -> int:
    return sync.repeat_minutes + sync.window_minutes


def grouped(counts: np.ndarray, sync: SyncConfig) -> list[set[int]]:
    return [set(g.rows.tolist()) for g in find_groups(counts, sync).groups]


@pytest.mark.parametrize("seed", range(3))
def test_a_synchronised_fleet_is_one_group_and_accounts_on_one_diurnal_curve_are_in_none(
        sync: SyncConfig, seed: int) -> None:
    rng = np.random.default_rng(seed)
    minutes = span(sync)
    robin = round_robin_fleet(rng, 15, minutes, 4.0)  # rows 0-14
    waves = waves_fleet(rng, 12, minutes, 8.0)  # rows 15-26
    others = independent(rng, 400, minutes)  # rows 27-: Poisson, one shared daily curve
    groups = grouped(np.vstack([robin, waves, others]), sync)
    assert set(range(15)) in groups
    # A waves member idle most of the window is not compared; of the others, nearly all are grouped.
    eligible = len(normalise(waves, sync).rows)
    assert eligible >= 5
    assert any(len(g) >= 0.6 * eligible and g <= set(range(15, 27)) for g in groups)
    assert all(not g & set(range(27, 427)) for g in groups)


def test_a_group_reports_its_members_correlation_and_activity(sync: SyncConfig) -> None:
    rng = np.random.default_rng(7)
    counts = round_robin_fleet(rng, 6, span(sync), 10.0)
    (group,) = find_groups(counts, sync).groups
    assert group.rows.tolist() == list(range(6))
    assert (group.r >= sync.min_r).all() and group.mean_r > 0.9
    assert (group.active == sync.window_minutes).all()
    # The mean of the members' mean r is the mean over the pairs: checked against all pairs.
    z = normalise(counts, sync).z
    pairs = (z @ z.T)[np.triu_indices(6, 1)]
    assert group.mean_r == pytest.approx(pairs.mean())


@pytest.mark.parametrize("seed", range(2))
def test_hard_negatives_are_in_no_group(sync: SyncConfig, seed: int) -> None:
    """Crons from :00 (bare, every 2 and 3 minutes; over steady traffic, every 5 and 15), hourly jobs at :00
    (the hour before known), low-rate accounts whose minutes are mostly 0 or 1: unrelated, sharing the clock
    and the daily curve. Without the defence meant for each, each of them does group."""
    rng = np.random.default_rng(100 + seed)
    minutes = span(sync)
    bare = np.vstack([bare_cron(rng, 150, minutes, 2), bare_cron(rng, 150, minutes, 3)])
    busy = np.vstack([cron_crowd(rng, 200, minutes, 5), cron_crowd(rng, 200, minutes, 15)])
    hourly = hourly_jobs(rng, 300, minutes)
    low = independent(rng, 400, minutes, low=0.3, high=1.5)
    found = find_groups(np.vstack([bare, busy, hourly, low]), sync)
    assert found.groups == []
    st = found.stats
    assert st.eligible > 500 and st.periodic >= 250 and st.repeating >= 100  # compared, or left out as clockwork
    no_periods = sync.model_copy(update={"periodic_share": 1.0, "repeat_minutes": 0})  # (a cron repeats hourly too)
    assert max(len(g) for g in grouped(bare[:, sync.repeat_minutes:], no_periods)) >= 50
    no_repeat = sync.model_copy(update={"repeat_minutes": 0})
    assert max(len(g) for g in grouped(hourly[:, sync.repeat_minutes:], no_repeat)) >= 4
    # A cron firing at :00 each hour, seen for the first time (the hour before unknown): clipping holds, and
    # without it the spike every account shows is recognised as the platform's curve.
    spikes = hourly_jobs(rng, 300, sync.window_minutes, longest=2, boost=20.0)
    first_hour = np.hstack([np.full((300, sync.repeat_minutes), np.nan), spikes])
    assert grouped(first_hour, sync) == []
    unclipped = find_groups(first_hour, sync.model_copy(update={"clip_mads": 50.0}))
    assert unclipped.groups == [] and unclipped.stats.widely_followed >= 1
    neither = sync.model_copy(update={"clip_mads": 50.0, "popular_share": 1.0})
    assert max(len(g) for g in grouped(first_hour, neither)) >= 100


@pytest.mark.parametrize("seed", range(2))
def test_a_change_the_whole_platform_sees_is_not_a_fleet(sync: SyncConfig, seed: int) -> None:
    """Every account's traffic triples at one minute (a launch, a region waking), or drops for five minutes
    and comes back with retries (an incident): the busiest accounts correlate, and so does everyone else."""
    rng = np.random.default_rng(200 + seed)
    minutes = span(sync)
    rates = np.exp(rng.uniform(np.log(0.3), np.log(80), 600))
    step = np.r_[np.ones(minutes - 30), np.full(30, 3.0)]
    outage = np.ones(minutes)
    outage[-25:-20], outage[-20:-17] = 0.05, 3.0
    unguarded = sync.model_copy(update={"popular_share": 1.0, "step_share": 1.0, "min_group": 2})
    for curve in (step, outage):
        counts = rng.poisson(np.outer(rates, curve))
        assert find_groups(counts, sync).groups == []
        # Without the step rule, what leaves it out is that everyone follows; without either, it links.
        found = find_groups(counts, sync.model_copy(update={"step_share": 1.0}))
        assert found.groups == [] and found.stats.widely_followed >= 1
        assert sum(len(g) for g in grouped(counts, unguarded)) >= 10
    # A ramp everyone follows (an office opening: 4x over the hour) is a slow curve: nothing to share.
    ramp = np.r_[np.ones(minutes - 60), np.linspace(1, 4, 60)]
    found = find_groups(rng.poisson(np.outer(rates, ramp)), sync)
    assert found.groups == [] and found.stats.eligible > 400 and found.stats.widely_followed == 0


def test_steady_clients_whose_rate_changes_at_the_top_of_the_hour_are_not_a_fleet(sync: SyncConfig) -> None:
    """Machine-regular clients (a count per minute that hardly varies) on hourly rate schedules: at :00 each
    steps to its next hour's rate, up or down. Their curves are one level shift each, and the few that
    step the same way correlate near 1; left out, they link nobody. (Seen in the loadgen's varied
    scenarios: a scraper, a summariser and a classifier linked by one shared step.)"""
    rng = np.random.default_rng(9)
    minutes = span(sync)
    n = 40
    rates = np.exp(rng.uniform(np.log(20), np.log(200), n))
    next_hour = rates * rng.choice([0.5, 0.8, 1.2, 1.5], n)
    hour = (np.arange(minutes) + START_MINUTE) % 60 == 0
    level = np.where(np.cumsum(hour)[None, :] >= 2, next_hour[:, None], rates[:, None])
    counts = np.round(level + rng.normal(0, 1.0, (n, minutes))).clip(0)
    found = find_groups(counts, sync)
    assert found.groups == [] and found.stats.stepped >= 20
    assert sum(len(g) for g in grouped(counts, sync.model_copy(update={"step_share": 1.0, "min_group": 2}))) >= 6


def test_low_rate_synchronised_accounts_are_below_what_minutes_can_show(sync: SyncConfig) -> None:
    """A documented limit: at half a call a minute, a shared curve drowns in 0/1 noise."""
    rng = np.random.default_rng(3)
    assert grouped(round_robin_fleet(rng, 20, span(sync), 0.5), sync) == []


def test_lsh_finds_the_pairs_all_pairs_would_and_compares_few(sync: SyncConfig) -> None:
    rng = np.random.default_rng(11)
    minutes = span(sync)
    counts = np.vstack([round_robin_fleet(rng, 10, minutes, 3.0), round_robin_fleet(rng, 25, minutes, 6.0),
                        waves_fleet(rng, 12, minutes, 10.0), independent(rng, 1500, minutes)])
    vectors = normalise(counts, sync)
    r = vectors.z @ vectors.z.T
    a, b = np.nonzero(np.triu(r >= sync.min_r, 1))
    strong = {(int(vectors.rows[i]), int(vectors.rows[j])) for i, j in zip(a.tolist(), b.tolist(), strict=True)}
    found = find_groups(counts, sync)
    together = {(x, y) for g in found.groups for x in g.rows.tolist() for y in g.rows.tolist() if x < y}
    assert len(strong) > 300
    assert len(strong & together) / len(strong) >= 0.95  # LSH recall of the verified pairs
    n = found.stats.eligible
    assert found.stats.candidates < 0.01 * n * (n - 1) / 2  # ... comparing under 1% of the pairs
    assert all(g.mean_r >= sync.min_r for g in found.groups)


def test_bits_per_band_grow_with_the_accounts() -> None:
    assert [band_bits(n) for n in (2, 200, 20_000, 10**9)] == [8, 10, 17, 30]


def test_a_window_without_enough_active_minutes_or_movement_is_not_compared(sync: SyncConfig) -> None:
    minutes = span(sync)
    steady = np.full((3, minutes), 7)  # a metronome: nothing moves
    sparse = np.zeros((3, minutes), int)
    sparse[:, ::4] = 9  # active a quarter of the minutes: below min_active_minutes
    found = find_groups(np.vstack([steady, sparse]), sync)
    assert found.stats.eligible == 0 and found.groups == []


def test_a_synchronised_pair_is_not_evidence_until_a_third_account_follows(sync: SyncConfig) -> None:
    """One pair at r >= min_r turns up by chance among thousands of compared accounts (make eval linked a
    benign app to a fleet member that way); a group needs ``min_group`` accounts."""
    rng = np.random.default_rng(5)
    minutes = span(sync)
    fleet = round_robin_fleet(rng, 3, minutes, 10.0)
    assert grouped(fleet[:2], sync) == []
    assert grouped(fleet[:2], sync.model_copy(update={"min_group": 2})) == [{0, 1}]
    assert grouped(fleet, sync) == [{0, 1, 2}]


@pytest.mark.parametrize("seed", range(3))
def test_the_early_window_groups_a_fleet_and_none_of_the_hard_negatives(sync: SyncConfig, seed: int) -> None:
    """The shorter window (``early``) links sooner on fewer minutes: the fleets of the main window's tests
    are grouped, and the crowd around them (one daily curve, crons from :00, hourly jobs, low rates) is not."""
    early = sync.scales()[0]
    assert early.window_minutes < sync.window_minutes
    rng = np.random.default_rng(300 + seed)
    minutes = span(early)
    robin = round_robin_fleet(rng, 15, minutes, 4.0)  # rows 0-14
    waves = waves_fleet(rng, 12, minutes, 8.0)  # rows 15-26
    crowd = np.vstack([independent(rng, 1500, minutes), bare_cron(rng, 150, minutes, 2),
                       bare_cron(rng, 150, minutes, 3), cron_crowd(rng, 200, minutes, 5),
                       cron_crowd(rng, 200, minutes, 15), hourly_jobs(rng, 300, minutes),
                       independent(rng, 400, minutes, low=0.3, high=1.5)])
    found = find_groups(np.vstack([robin, waves, crowd]), early)
    groups = [set(g.rows.tolist()) for g in found.groups]
    assert set(range(15)) in groups
    assert all(not g & set(range(27, 27 + len(crowd))) for g in groups)
    assert found.stats.eligible > 1500 and found.stats.periodic + found.stats.repeating >= 200


# (Seed 301's fleet changes level once in its 20 minutes: left out as a step until more of it is known.)
@pytest.mark.parametrize("seed", [300, 302, 303])
def test_accounts_known_for_part_of_the_window_are_judged_over_those_minutes(sync: SyncConfig, seed: int) -> None:
    """The early window's accounts first seen ``min_known_minutes`` ago (the minutes before unknown, NaN): a fleet
    that began then is grouped over its known minutes, a 5-minute cron crowd begun with it is left out as
    clockwork (four periods known), and the unknown minutes add nothing to anyone's vector."""
    early = sync.scales()[0]
    rng = np.random.default_rng(seed)
    known = early.known_minutes
    assert known < early.window_minutes
    fleet = round_robin_fleet(rng, 8, known, 8.0)  # rows 0-7 (waves: one wave and a lull in 20 minutes is a step)
    crowd = cron_crowd(rng, 40, known, 5)
    others = independent(rng, 60, known)
    unknown = np.full((108, early.repeat_minutes + early.window_minutes - known), np.nan)
    counts = np.hstack([unknown, np.vstack([fleet, crowd, others])])
    found = find_groups(counts, early)
    assert [set(g.rows.tolist()) for g in found.groups] == [set(range(8))]
    assert found.stats.periodic >= 30
    vectors = normalise(counts, early)
    assert np.all(vectors.z[:, :early.window_minutes - known] == 0.0)
    assert np.allclose((vectors.z * vectors.z).sum(axis=1), 1.0)

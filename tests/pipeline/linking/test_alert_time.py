from __future__ import annotations

import bisect
import itertools

from pipeline.linking.alert_time import Staircase, add_step, qualified_since
from pipeline.linking.clusters import Evidence
from pipeline.linking.config import LinkingConfig
from pipeline.linking.link_state import LinkState
from tests.support.link_builders import share


def score_at(steps: Staircase, ts: int) -> int:
    """The staircase's value at ``ts`` (0 before its first step)."""
    i = bisect.bisect_right([t for t, _ in steps], ts)
    return steps[i - 1][1] if i else 0


def test_staircase_is_the_running_max_whatever_the_insertion_order() -> None:
    points = [(300, 40.2), (100, 20.9), (200, 10.0), (400, 39.0), (500, 75.5), (150, 20.0)]
    results = set()
    for order in itertools.permutations(points):
        steps: list[list[int]] = []
        for ts, score in order:
            steps = add_step(steps, ts, score)
        results.add(tuple(map(tuple, steps)))
    assert results == {((100, 20), (300, 40), (500, 75))}
    steps = [[100, 20], [300, 40], [500, 75]]
    assert [score_at(steps, t) for t in (50, 100, 299, 300, 10**12)] == [0, 20, 20, 40, 75]


def _linked(config: LinkingConfig, links: list[tuple[str, str, str, int]]) -> dict[tuple[str, str], Evidence]:
    """The linked pairs (with evidence) of accounts seen two by two with features, in the given order."""
    features: dict[str, dict[str, object]] = {}
    members = set()
    for a, b, feature, ts in links:
        share(features, feature, [a, b], ts, config)
        members |= {a, b}
    return LinkState(features, config).pair_evidence(members)


def test_members_qualify_when_the_cluster_first_met_the_policy(config: LinkingConfig) -> None:
    # min_alert_size is 3: a and b are linked at 10, c joins at 20, d at 40.
    linked = _linked(config, [("a", "b", "pay:1", 10), ("b", "c", "pay:2", 20), ("c", "d", "pay:3", 40)])
    hot = {m: {"calls": 10_000, "steps": [[5, 90]]} for m in "abcd"}
    assert qualified_since({"a", "b", "c", "d"}, linked, hot, config) == {"a": 20, "b": 20, "c": 20, "d": 40}


def test_a_late_score_rise_moves_the_qualifying_time(config: LinkingConfig) -> None:
    linked = _linked(config, [("a", "b", "pay:1", 10), ("b", "c", "pay:1", 20)])
    accounts = {m: {"calls": 10_000, "steps": [[5, 10], [300, 90]]} for m in "abc"}
    assert qualified_since({"a", "b", "c"}, linked, accounts, config) == dict.fromkeys("abc", 300)
    quiet = {m: {"calls": 10_000, "steps": [[5, 10]]} for m in "abc"}
    assert qualified_since({"a", "b", "c"}, linked, quiet, config) == {}  # never behaved like extraction


def test_qualifying_times_do_not_depend_on_evidence_order(config: LinkingConfig) -> None:
    links = [("a", "b", "pay:1", 10), ("b", "c", "ip24:1.2.3", 15), ("b", "c", "tpl:0:ab", 30), ("c", "d", "pay:2", 25)]
    accounts = {m: {"calls": 500, "steps": [[1, 70]]} for m in "abcd"}
    results = {tuple(sorted(qualified_since(set("abcd"), _linked(config, list(order)), accounts, config).items()))
               for order in itertools.permutations(links)}
    assert results == {(("a", 30), ("b", 30), ("c", 30), ("d", 30))}


def test_a_quiet_member_qualifies_only_once_its_own_score_or_the_members_mean_does(config: LinkingConfig) -> None:
    # A reseller's card links three extractors to quiet customers: the cluster qualifies at 20 for the
    # extractors; customer e, quiet until 500, qualifies then; the others never do (the plain mean stays low).
    customers = [f"q{i}" for i in range(16)]
    chain = ["a", "b", "c", "e", *customers]
    linked = _linked(config, [(x, y, "pay:1", 20 if x != "a" else 10) for x, y in itertools.pairwise(chain)])
    accounts = {**{m: {"calls": 10_000, "steps": [[5, 90]]} for m in "abc"},
                **{m: {"calls": 10_000, "steps": [[5, 2]]} for m in customers},
                "e": {"calls": 10_000, "steps": [[5, 3], [500, 25]]}}
    assert qualified_since(set(chain), linked, accounts, config) == {"a": 20, "b": 20, "c": 20, "e": 500}

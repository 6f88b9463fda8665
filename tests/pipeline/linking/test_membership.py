from __future__ import annotations

import pytest

from pipeline.linking.config import LinkingConfig
from pipeline.linking.membership import kind_of, observe, partners


def test_new_members_join_with_their_first_sighting(config: LinkingConfig) -> None:
    first = observe(None, "pay:pf_1", [("org-b", 10, 0), ("org-a", 20, 0)], config)
    assert first.joined == ["org-b", "org-a"]  # event-time order
    second = observe(first.state, "pay:pf_1", [("org-c", 15, 0)], config)
    assert second.joined == ["org-c"]
    assert second.state == {"m": {"org-b": [10, 0], "org-a": [20, 0], "org-c": [15, 0]}}
    assert partners(second.state["m"], "org-c", "pay:pf_1", 8) == ["org-b", "org-a"]  # type: ignore[arg-type, index]


def test_seeing_members_again_changes_nothing(config: LinkingConfig) -> None:
    state = observe(None, "ip24:203.0.113", [("org-a", 1, 0), ("org-b", 2, 0)], config).state
    again = observe(state, "ip24:203.0.113", [("org-b", 5, 0), ("org-a", 7, 0)], config)
    assert again.state is None and again.joined == [] and again.popular_ts is None


def test_template_members_link_only_when_samples_are_near(config: LinkingConfig) -> None:
    base = 0xFFFF_0000_1234_5678
    near = base ^ 0b1111111 << 40  # 7 bits apart
    far = base ^ 0b111111111 << 40  # 9 bits apart
    members = {"org-a": [1, base], "org-b": [2, near], "org-c": [2, far]}
    state = observe(None, "tpl:0:5678", [(m, ts, sample) for m, (ts, sample) in members.items()], config).state
    assert state == {"m": members}  # all members; only near samples are evidence
    assert partners(members, "org-a", "tpl:0:5678", config.template.max_hamming) == ["org-b"]  # not org-c
    assert partners(members, "org-c", "tpl:0:5678", config.template.max_hamming) == ["org-b"]  # 2 bits apart


def test_a_feature_shared_by_more_than_the_cap_becomes_popular_for_good(config: LinkingConfig) -> None:
    cap = config.kinds["asn"].cap
    state = observe(None, "asn:16509", [(f"org-{i:03d}", i, 0) for i in range(cap)], config).state
    assert len(state["m"]) == cap  # type: ignore[arg-type, index]
    update = observe(state, "asn:16509", [("org-new", 500, 0)], config)
    assert update.popular_ts == 500 and update.joined == [] and update.state == {"pop": 500, "n": cap + 1}
    assert update.dropped == [f"org-{i:03d}" for i in range(cap)]  # stage B forgets their evidence
    later = observe(update.state, "asn:16509", [("org-later", 600, 0)], config)
    assert later.state is None and later.joined == [] and later.popular_ts is None


def test_order_of_sightings_does_not_change_the_members(config: LinkingConfig) -> None:
    seen = [("org-c", 3, 0), ("org-a", 1, 0), ("org-b", 2, 0)]
    assert observe(None, "pay:x", seen, config) == observe(None, "pay:x", list(reversed(seen)), config)


@pytest.mark.parametrize(("feature", "kind"), [
    ("ip24:1.2.3", "ip"), ("ip48:2001:db8:0", "ip"), ("pay:pf", "pay"), ("tpl:0:abcd", "tpl"), ("ua:00ff", "ua"),
])
def test_kind_of(feature: str, kind: str) -> None:
    assert kind_of(feature) == kind

from __future__ import annotations

import pytest

from pipeline.linking.config import LinkingConfig
from pipeline.linking.membership import kind_of, observe


def test_new_member_links_to_every_member(config: LinkingConfig) -> None:
    first = observe(None, "pay:pf_1", [("org-b", 10, 0), ("org-a", 20, 0)], config)
    assert first.edges == [("org-a", "org-b", 20)]
    second = observe(first.state, "pay:pf_1", [("org-c", 15, 0)], config)
    assert sorted(second.edges) == [("org-a", "org-c", 20), ("org-b", "org-c", 15)]
    assert set(second.state["m"]) == {"org-a", "org-b", "org-c"}  # type: ignore[index]


def test_seeing_members_again_changes_nothing(config: LinkingConfig) -> None:
    state = observe(None, "ip24:203.0.113", [("org-a", 1, 0), ("org-b", 2, 0)], config).state
    again = observe(state, "ip24:203.0.113", [("org-b", 5, 0), ("org-a", 7, 0)], config)
    assert again.state is None and again.edges == [] and again.popular_ts is None


def test_template_members_link_only_when_samples_are_near(config: LinkingConfig) -> None:
    base = 0xFFFF_0000_1234_5678
    near = base ^ 0b1111111 << 40  # 7 bits apart
    far = base ^ 0b111111111 << 40  # 9 bits apart
    state = observe(None, "tpl:0:5678", [("org-a", 1, base)], config).state
    assert observe(state, "tpl:0:5678", [("org-b", 2, near)], config).edges == [("org-a", "org-b", 2)]
    update = observe(state, "tpl:0:5678", [("org-c", 2, far)], config)
    assert update.edges == [] and "org-c" in update.state["m"]  # type: ignore[index, operator]


def test_a_feature_shared_by_more_than_the_cap_becomes_popular_for_good(config: LinkingConfig) -> None:
    cap = config.kinds["asn"].cap
    state = observe(None, "asn:16509", [(f"org-{i:03d}", i, 0) for i in range(cap)], config).state
    assert len(state["m"]) == cap  # type: ignore[arg-type, index]
    update = observe(state, "asn:16509", [("org-new", 500, 0)], config)
    assert update.popular_ts == 500 and update.edges == [] and update.state == {"pop": 500, "n": cap + 1}
    later = observe(update.state, "asn:16509", [("org-later", 600, 0)], config)
    assert later.state is None and later.edges == [] and later.popular_ts is None


def test_order_of_sightings_does_not_change_the_edges(config: LinkingConfig) -> None:
    seen = [("org-c", 3, 0), ("org-a", 1, 0), ("org-b", 2, 0)]
    assert (sorted(observe(None, "pay:x", seen, config).edges)
            == sorted(observe(None, "pay:x", list(reversed(seen)), config).edges))


@pytest.mark.parametrize(("feature", "kind"), [
    ("ip24:1.2.3", "ip"), ("ip48:2001:db8:0", "ip"), ("pay:pf", "pay"), ("tpl:0:abcd", "tpl"), ("ua:00ff", "ua"),
])
def test_kind_of(feature: str, kind: str) -> None:
    assert kind_of(feature) == kind

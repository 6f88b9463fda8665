"""Links derived from the memberships: union-find over ids, joins, popular features, evidence on demand."""

from __future__ import annotations

import itertools
import random

from pipeline.linking.clusters import pair_strength
from pipeline.linking.config import LinkingConfig
from pipeline.linking.link_state import LinkState
from pipeline.linking.membership import hamming, kind_of
from pipeline.linking.messages import MemberChanges
from pipeline.linking.union_find import UnionFind
from tests.support.link_builders import share


def apply(links: LinkState, changes: MemberChanges) -> None:
    """What stage B does with one message's member changes."""
    for feature, account in changes.joined:
        links.join(feature, account)
    dropped = [m for _, members in [*changes.dropped, *changes.hubbed] for m in members]
    for feature, members in changes.dropped:
        links.drop(feature, members)
    if dropped:
        links.relink(dropped)


def groups(links: LinkState) -> set[frozenset[str]]:
    return set(links.components().values())


def test_union_find_grows_past_its_arrays_and_labels_every_id() -> None:
    sets = UnionFind()
    ids = [sets.add() for _ in range(40)]  # past the initial 16: the arrays double
    assert ids == list(range(40)) and len(sets.parent) >= 40
    for a, b in [(0, 1), (2, 3), (1, 3), (39, 20)]:
        sets.union(a, b)
    labels = sets.labels().tolist()
    assert len({labels[i] for i in (0, 1, 2, 3)}) == 1 and labels[39] == labels[20] != labels[0]
    assert int(sets.size[sets.find(2)]) == 4 and int(sets.size[sets.find(5)]) == 1


def test_links_follow_the_memberships_and_split_when_a_feature_turns_popular(config: LinkingConfig) -> None:
    features: dict[str, dict[str, object]] = {}
    links = LinkState(features, config)
    apply(links, share(features, "pay:1", ["a", "b"], 10, config))
    apply(links, share(features, "pay:2", ["b", "c"], 20, config))
    apply(links, share(features, "asn:7", ["c", "d"], 30, config))  # evidence, not a link
    assert groups(links) == {frozenset("abc")} and not links.linked("d")
    assert links.evidence("c", "d") == {"asn:7": 30}
    assert groups(LinkState(dict(features), config)) == {frozenset("abc")}  # rebuilt from the memberships alone

    crowd = [f"z{i:02d}" for i in range(config.kinds["pay"].cap - 1)]
    apply(links, share(features, "pay:2", crowd, 40, config))  # pay:2 is popular: b and c no longer linked
    assert features["pay:2"] == {"pop": 40, "n": config.kinds["pay"].cap + 1}
    assert groups(links) == {frozenset("ab")} == groups(LinkState(features, config))
    assert links.evidence("b", "c") == {}


def test_weak_kinds_link_together_and_templates_only_when_near(config: LinkingConfig) -> None:
    features: dict[str, dict[str, object]] = {}
    links = LinkState(features, config)
    apply(links, share(features, "ip24:10.0.0", ["x", "y", "z"], 5, config))
    assert groups(links) == set()  # a shared /24 alone: 0.45
    near, far = 0b1111, 0xFFF << 40  # 4 and 12 bits from x's 0, 16 apart
    apply(links, share(features, "tpl:0:0000", ["x", "y", "z"], 9, config, samples=[0, near, far]))
    assert groups(links) == {frozenset("xy")}
    assert links.pair_evidence(frozenset("xyz")) == {("x", "y"): {"ip24:10.0.0": 5, "tpl:0:0000": 9}}


def test_a_join_ignores_features_made_popular_later_in_the_same_fetch(config: LinkingConfig) -> None:
    features: dict[str, dict[str, object]] = {}
    links = LinkState(features, config)
    apply(links, share(features, "ip24:1.2.3", ["x", "y"], 1, config))
    apply(links, share(features, "asn:1", ["x", "y"], 1, config))
    # One fetch: stage A applies both messages, then stage B reads memberships already past the first.
    template = share(features, "tpl:0:0001", ["x", "y"], 2, config)
    crowd = share(features, "asn:1", [f"z{i}" for i in range(config.kinds["asn"].cap)], 3, config)
    apply(links, template)
    apply(links, crowd)
    assert groups(links) == {frozenset("xy")} and links.evidence("x", "y") == {"ip24:1.2.3": 1, "tpl:0:0001": 2}


def _brute_force(features: dict[str, dict[str, object]], config: LinkingConfig) -> set[frozenset[str]]:
    """Clusters from every pair's evidence, computed directly (the pair table the old stage B kept); a hub
    links every member near its centre."""
    evidence: dict[tuple[str, str], set[str]] = {}
    hubs = []
    for feature, state in features.items():
        if "h" in state:
            centre, near = state["c"], config.template.max_hamming
            hubs.append(sorted(a for a, (_, sample) in state["h"].items()  # type: ignore[attr-defined]
                               if kind_of(feature) != "tpl" or hamming(sample, centre) <= near))  # type: ignore[arg-type]
        members = state.get("m", {})
        for (a, (_, sa)), (b, (_, sb)) in itertools.combinations(sorted(members.items()), 2):  # type: ignore[attr-defined]
            if kind_of(feature) != "tpl" or hamming(sa, sb) <= config.template.max_hamming:
                evidence.setdefault((a, b), set()).add(feature)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for (a, b), shared in evidence.items():
        if pair_strength(shared, config) >= config.link_threshold:
            parent[find(a)] = find(b)
    for linked in hubs:
        for a, b in itertools.pairwise(linked):
            parent[find(a)] = find(b)
    found: dict[str, set[str]] = {}
    for x in list(parent):
        found.setdefault(find(x), set()).add(x)
    return {frozenset(g) for g in found.values() if len(g) > 1}


def test_a_shared_client_stack_and_template_link_without_card_or_network(config: LinkingConfig) -> None:
    # A template-only fleet: own cards and networks, one scraping stack (TLS and HTTP/2 fingerprints).
    features: dict[str, dict[str, object]] = {}
    links = LinkState(features, config)
    apply(links, share(features, "tls:t13d1812h1_85036bcba153_b26ce05bbdd6", ["f1", "f2", "f3"], 5, config))
    apply(links, share(features, "h2:0a1b", ["f1", "f2", "f3"], 6, config))
    apply(links, share(features, "asn:7", ["f1", "f2", "f3"], 7, config))
    assert groups(links) == set()  # every user of a library shares its stack: no evidence without a template
    assert links.pair_evidence(frozenset({"f1", "f2", "f3"})) == {}
    apply(links, share(features, "tpl:0:0000", ["f1", "f2"], 9, config, samples=[0, 0b11]))
    assert groups(links) == {frozenset({"f1", "f2"})} == groups(LinkState(features, config))


def test_every_weak_link_shares_a_pivot_kind(config: LinkingConfig) -> None:
    # The candidates of a rebuild are the pairs of pivot-kind features: no link may lack one.
    links = LinkState({}, config)
    weak = [k for k in config.kinds if k not in links.strong]
    linking = [set(kinds) for n in range(1, len(weak) + 1) for kinds in itertools.combinations(weak, n)
               if config.strength(kinds) >= config.link_threshold]
    assert {"tpl", "tls", "h2"} in linking and {"ip", "asn", "ua", "tls", "h2"} not in linking
    assert all(links.pivots & kinds for kinds in linking)
    assert links.pivots == links.needed == {"tpl"}  # the default weights: no weak link without a template


def test_incremental_links_equal_the_clusters_of_every_pairs_evidence(config: LinkingConfig) -> None:
    rng = random.Random(16)
    features: dict[str, dict[str, object]] = {}
    links = LinkState(features, config)
    accounts = [f"acct-{i:03d}" for i in range(300)]
    counts = []
    fetch: list[MemberChanges] = []
    names = ["pay:{}", "ip24:{}", "tpl:0:{}", "asn:{}", "ua:{}", "tls:{}", "h2:{}"]
    for step in range(402):
        feature = rng.choice(names).format(rng.randrange(40))
        seen = rng.sample(accounts, rng.choice([1, 2] if feature.startswith("pay") else [1, 2, 3, 8, 8, 40]))
        samples = [rng.choice([0, 0b11, 1 << 60 | 0xFFF]) for _ in seen]
        fetch.append(share(features, feature, seen, step, config, samples=samples))
        if step % 3 == 2:  # a fetch: stage A applies several messages before stage B reads the memberships
            for changes in fetch:
                apply(links, changes)
            fetch.clear()
        if step % 51 == 50:
            expected = _brute_force(features, config)
            assert groups(links) == expected == groups(LinkState(features, config))
            counts.append(len(expected))
    assert any("pop" in s for s in features.values()) and max(counts) > 3, counts
    assert any("h" in s for s in features.values())  # templates past their cap: hubs

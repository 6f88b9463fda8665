"""Stage B's linking state, derived from stage A's memberships: no pair evidence is stored.

A pair's evidence is a function of the memberships, computed when needed (``evidence``,
``pair_evidence``). Kept: an index account -> features and a union-find over interned account
ids. A strong feature (``pay``) and a hub (``HubLinks``) cost N unions for N members, their pairs
never enumerated; another feature unites a new member with each partner reaching
``link_threshold``. A union-find cannot split, so a feature made popular or turned hub rebuilds
its former members' clusters from the memberships (``relink``). Rules: docs/linking.md
("Topology": Stage B; "Hubs: templates and timing past the cap").
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

import numpy as np

from pipeline.linking.clusters import Evidence, HubLinks, pair_strength
from pipeline.linking.config import LinkingConfig
from pipeline.linking.membership import hamming, kind_of, near, partners
from pipeline.linking.sync_tracker import sample_window, unpack_sample
from pipeline.linking.union_find import UnionFind

Pair = tuple[str, str]  # (a, b) with a < b


class LinkState:
    """Linked accounts over ``features`` (stage A's mapping: feature -> ``{"m": {account: [ts, sample]}}``)."""

    def __init__(self, features: Mapping[str, dict[str, object]], config: LinkingConfig) -> None:
        self.features = features
        self.config = config
        self.max_hamming = config.template.max_hamming
        self.strong = {k for k in config.kinds if k != "tpl" and config.weight(k) >= config.link_threshold}
        self.needed = self._needed_kinds()  # every link without a strong feature shares all of these
        self.pivots = self._pivot_kinds()  # ... and at least one of these: their pairs are the candidates
        self.ids: dict[str, int] = {}
        self.names: list[str] = []
        self.index: dict[str, set[str]] = {}
        self.sets = UnionFind()
        self.anchors: dict[str, int] = {}  # hub -> id of a member linked through it (the others join it)
        for feature, state in features.items():
            for account in state.get("m") or state.get("h") or ():  # type: ignore[attr-defined]
                self._id(account)
                self.index.setdefault(account, set()).add(feature)
        self.relink()

    def _needed_kinds(self) -> frozenset[str]:
        """The weak kinds without which the other weak kinds cannot reach the threshold (``ip`` and ``tpl``)."""
        weak = {k for k in self.config.kinds if k not in self.strong}
        return frozenset(k for k in weak if self.config.strength(weak - {k}) < self.config.link_threshold)

    def _pivot_kinds(self) -> frozenset[str]:
        """Weak kinds such that every weak link shares one of them: a needed kind if there is one,
        else the heaviest kinds until the others together fall short of the threshold."""
        if self.needed:
            return frozenset({min(self.needed)})
        rest = {k for k in self.config.kinds if k not in self.strong}
        pivots = set()
        for kind in sorted(rest, key=self.config.weight, reverse=True):
            if self.config.strength(rest) < self.config.link_threshold:
                break
            pivots.add(kind)
            rest.discard(kind)
        return frozenset(pivots)

    def _id(self, account: str) -> int:
        i = self.ids.get(account)
        if i is None:
            i = self.ids[account] = len(self.names)
            self.names.append(account)
            self.sets.add()
        return i

    def _members(self, feature: str) -> dict[str, list[int]]:
        """A (non-hub) feature's members; a hub has none of these: its members are ``_linked_through``."""
        state = self.features.get(feature)
        return state.get("m", {}) if state else {}  # type: ignore[return-value]

    def _hub(self, feature: str) -> dict[str, object] | None:
        state = self.features.get(feature)
        return state if state is not None and "h" in state else None

    def _linked_through(self, feature: str, hub: Mapping[str, object]) -> dict[str, int]:
        """The members a hub links: account -> its first sighting (``tpl``: near the centre only)."""
        members: dict[str, list[int]] = hub["h"]  # type: ignore[assignment]
        if kind_of(feature) != "tpl":
            return {a: ts for a, (ts, _) in members.items()}
        centre, max_hamming = int(hub["c"]), self.max_hamming  # type: ignore[call-overload]
        return {a: ts for a, (ts, sample) in members.items() if (sample ^ centre).bit_count() <= max_hamming}

    def hub_since(self, feature: str) -> int:
        """Event time the hub first had more members than its kind's cap: the (cap + 1)-th first sighting.
        From the members' times only, so whatever order they arrived in."""
        hub = self._hub(feature)
        if hub is None:
            return 0
        times = np.fromiter((ts for ts, _ in hub["h"].values()), np.int64)  # type: ignore[attr-defined]
        k = min(self.config.kinds[kind_of(feature)].cap, len(times) - 1)
        return int(np.partition(times, k)[k])

    def evidence(self, a: str, b: str) -> Evidence:
        """The features ``a`` and ``b`` share as evidence, each since the later of their first sightings."""
        out: Evidence = {}
        for feature in self.index.get(a, set()) & self.index.get(b, set()):
            members = self._members(feature)  # a hub's members are already in one set: not needed
            if a not in members or b not in members:
                continue  # made popular later in this fetch: dropped from the index after its joins
            (ta, sa), (tb, sb) = members[a], members[b]
            if kind_of(feature) != "tpl" or hamming(sa, sb) <= self.max_hamming:
                out[feature] = max(ta, tb)
        return out

    def _link(self, a: str, b: str) -> None:
        ia, ib = self._id(a), self._id(b)
        sets = self.sets
        if sets.find(ia) != sets.find(ib) and pair_strength(self.evidence(a, b), self.config) >= \
                self.config.link_threshold:
            sets.union(ia, ib)

    def relink(self, dropped: Iterable[str] | None = None) -> None:
        """Rebuild the sets from the memberships: all of them, or only the clusters that held ``dropped``
        (the accounts a popular feature lost: only their clusters can split)."""
        if dropped is None:
            self.sets = UnionFind(len(self.names))
            self._unite(self.features)
            return
        labels = self.sets.labels()
        roots = [labels[i] for i in (self.ids.get(a) for a in dropped) if i is not None]
        ids = np.flatnonzero(np.isin(labels, roots))
        self.sets.parent[ids] = ids
        self.sets.size[ids] = 1
        names = self.names
        self._unite({f for i in ids.tolist() for f in self.index.get(names[i], ())})

    def _unite(self, features: Iterable[str]) -> None:
        """Union the members of ``features``: strong ones as a chain, then the pairs of pivot-kind ones."""
        weak = []
        for feature in features:
            if (hub := self._hub(feature)) is not None:
                linked = [self._id(a) for a in self._linked_through(feature, hub)]
                for i in linked[1:]:
                    self.sets.union(linked[0], i)
                if linked:
                    self.anchors[feature] = linked[0]
                continue
            members = list(self._members(feature))
            kind = kind_of(feature)
            if kind in self.strong and members:
                first = self._id(members[0])
                for m in members[1:]:
                    self.sets.union(first, self._id(m))
            elif len(members) > 1 and kind in self.pivots:
                weak.append(feature)
        for feature in weak:
            group = self._members(feature)
            for a in group:
                for b in partners(group, a, feature, self.max_hamming):
                    if a < b:
                        self._link(a, b)

    def join(self, feature: str, account: str) -> list[str]:
        """Link ``account``, a new member of ``feature``; the partners it now shares the feature with (none
        for a hub: it is united with the hub's anchor)."""
        if (hub := self._hub(feature)) is not None:
            self._join_hub(feature, hub, account)
            return []
        members = self._members(feature)
        if account not in members:
            return []  # made popular since
        self.index.setdefault(account, set()).add(feature)
        ia = self._id(account)
        others = partners(members, account, feature, self.max_hamming)
        if kind_of(feature) in self.strong:
            if others:
                self.sets.union(ia, self._id(others[0]))
        elif self.needed <= (kinds := {kind_of(f) for f in self.index[account]}) and not self.pivots.isdisjoint(kinds):
            for b in others:  # (without every needed kind, or without a pivot kind, no weak link is possible)
                self._link(account, b)
        return others

    def _join_hub(self, feature: str, hub: Mapping[str, object], account: str) -> None:
        members: dict[str, list[int]] = hub["h"]  # type: ignore[assignment]
        if account not in members:
            return
        self.index.setdefault(account, set()).add(feature)
        ia = self._id(account)
        if not near(hub, feature, members[account][1], self.max_hamming):
            return
        anchor = self.anchors.get(feature)
        if anchor is None:
            self.anchors[feature] = ia
        else:
            self.sets.union(anchor, ia)

    def drop(self, feature: str, accounts: Iterable[str]) -> None:
        """``feature`` became popular: it is no evidence for its former ``accounts`` (call ``relink`` after)."""
        self.anchors.pop(feature, None)
        for account in accounts:
            self.index.get(account, set()).discard(feature)

    def linked(self, account: str) -> bool:
        i = self.ids.get(account)
        return i is not None and int(self.sets.size[self.sets.find(i)]) > 1

    def components(self) -> dict[str, frozenset[str]]:
        """Account -> the members of its cluster, for every account in a cluster (two members or more)."""
        labels = self.sets.labels()
        multi = np.flatnonzero(self.sets.size[labels] > 1)
        order = multi[np.argsort(labels[multi], kind="stable")]
        bounds = np.flatnonzero(np.diff(labels[order])) + 1
        names = self.names
        out: dict[str, frozenset[str]] = {}
        for group in np.split(order, bounds) if len(order) else []:
            members = frozenset(names[i] for i in group.tolist())
            out.update(dict.fromkeys(members, members))
        return out

    def label(self, feature: str) -> str:
        """A feature as listed: its name, for a hub how many accounts it links, and for ``sync`` what its
        members' calls did (their mean r with their group when they joined it, over the configured window)."""
        hub = self._hub(feature)
        members: dict[str, list[int]] = hub["h"] if hub is not None else self._members(feature)  # type: ignore[assignment]
        linked = list(self._linked_through(feature, hub)) if hub is not None else list(members)
        shown = f"{feature} shared by {len(linked)} accounts (hub)" if hub is not None else feature
        if kind_of(feature) != "sync":
            return shown
        packed = [members[a][1] for a in linked]
        if not packed:
            return shown
        r = sum(unpack_sample(s)[0] for s in packed) / len(packed)
        # Each sample names the window it was measured over (0: written before there were two windows).
        windows = sorted({sample_window(s) or self.config.sync.window_minutes for s in packed})
        over = f"{windows[0]}" if len(windows) == 1 else f"{windows[0]}-{windows[-1]}"
        return f"{shown} (calls per minute correlate r={r:.2f} over {over} minutes, {len(packed)} accounts)"

    def hub_links(self, members: Collection[str]) -> list[HubLinks]:
        """The hubs linking ``members`` (one cluster), each with its members' link times, sorted."""
        out = []
        for feature in sorted({f for a in members for f in self.index.get(a, ()) if self._hub(f) is not None}):
            hub = self._hub(feature)
            since = self.hub_since(feature)
            joins = sorted((max(ts, since), a) for a, ts in self._linked_through(feature, hub).items()  # type: ignore[arg-type]
                           if a in members)
            if len(joins) > 1:
                out.append(HubLinks(feature, self.config.weight(kind_of(feature)), tuple(joins)))
        return out

    def pair_evidence(self, members: Collection[str]) -> dict[Pair, Evidence]:
        """The linked pairs among ``members`` (sorted) with their evidence, from their co-memberships."""
        found: dict[Pair, Evidence] = {}
        max_hamming = self.max_hamming
        hubs: dict[str, dict[str, int]] = {}  # hub -> member -> link time (a hub's pairs are not enumerated)
        for feature in {f for a in members for f in self.index.get(a, ())}:
            if (hub := self._hub(feature)) is not None:
                since = self.hub_since(feature)
                hubs[feature] = {a: max(ts, since) for a, ts in self._linked_through(feature, hub).items()}
                continue
            state = self.features.get(feature)
            if state is None or len(state.get("m", ())) < 2:  # type: ignore[arg-type]
                continue
            inside = [(m, ts, sample) for m, (ts, sample) in self._members(feature).items() if m in members]
            tpl = kind_of(feature) == "tpl"
            for i, (a, ta, sa) in enumerate(inside):
                for b, tb, sb in inside[i + 1:]:
                    if not tpl or (sa ^ sb).bit_count() <= max_hamming:
                        found.setdefault((a, b) if a < b else (b, a), {})[feature] = ta if ta > tb else tb
        for (a, b), ev in found.items():
            for feature, times in hubs.items():
                if a in times and b in times:
                    ev[feature] = max(times[a], times[b])
        threshold = self.config.link_threshold
        return {p: ev for p, ev in sorted(found.items()) if pair_strength(ev, self.config) >= threshold}

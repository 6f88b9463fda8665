"""Stage A logic: feature → bounded set of accounts. The link evidence is derived from it (``link_state``).

A feature's state is a JSON-able dict: its members (at most the kind's cap), a hub (kinds with a
``hub_cap``, ``config.HUB_KINDS``: past the cap, at most ``hub_cap``) or popular (members
dropped). ``observe`` applies one message's observations of one feature and reports the new
members, ``dropped`` and ``hubbed``; ``tpl`` members link only within ``max_hamming`` bits
(``partners``, ``near``). Idempotent: observing a member again changes and yields nothing.
Rules and state: docs/linking.md ("Topology": Stage A; "Hubs: templates and timing past the cap").
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.linking.config import FEATURE_KINDS, LinkingConfig
from pipeline.linking.feature_keys import tpl_band, tpl_feature

Member = tuple[str, int, int]  # account, first event time (ms), sample simhash (tpl; 0 otherwise)


def kind_of(feature: str) -> str:
    """The weighted kind of a feature (``ip24:…`` and ``ip48:…`` are both ``ip``); KeyError if unknown."""
    return FEATURE_KINDS[feature.partition(":")[0]]


def hamming(x: int, y: int) -> int:
    return (x ^ y).bit_count()


def centre(members: Mapping[str, Sequence[int]], max_hamming: int) -> int:
    """The sample of the member with the most members within ``max_hamming`` bits (ties: earliest, then
    smallest account): the hub's centre. Vectorised (cap + 1 members: about 4,000 XORs)."""
    names = sorted(members, key=lambda a: (members[a][0], a))
    samples = np.asarray([members[a][1] for a in names], np.uint64)
    xor = samples[:, None] ^ samples[None, :]
    bits = np.unpackbits(xor.view(np.uint8).reshape(len(names), len(names), 8), axis=2).sum(axis=2)
    return int(samples[int(np.argmax((bits <= max_hamming).sum(axis=1)))])


def near(state: Mapping[str, object], feature: str, sample: int, max_hamming: int) -> bool:
    """Whether a hub member with ``sample`` is linked through the hub (``tpl``: near its centre)."""
    return kind_of(feature) != "tpl" or hamming(sample, int(state["c"])) <= max_hamming  # type: ignore[call-overload]


def partners(members: Mapping[str, Sequence[int]], account: str, feature: str, max_hamming: int) -> list[str]:
    """The members ``account`` shares ``feature`` with as evidence (for ``tpl``: near samples only)."""
    if kind_of(feature) != "tpl":
        return [m for m in members if m != account]
    sample = members[account][1]
    return [m for m, (_, other) in members.items() if m != account and hamming(sample, other) <= max_hamming]


def template_relatives(features: Mapping[str, Mapping[str, object]], feature: str, samples: Iterable[int],
                       config: LinkingConfig) -> dict[str, list[int]]:
    """The sightings of ``feature``'s template on its other bands: account -> [first sighting, sample].

    One template's calls spread over its bands' ``tpl`` features as their flipped bits fall, so counted
    band by band a fleet reaches the cap several times later than counted as one template (a fleet of
    116 at 0.07 calls a minute: 24 against 11 minutes, docs/linking.md). ``samples``: the samples of
    ``feature``'s members and new sightings; their other band values name the sibling features, whose
    members within ``max_hamming`` bits of one of them count; of a sibling hub whose centre is that
    near, its first ``cap + 1`` members near the centre (enough for the hub's since)."""
    t = config.template
    band, mask, cap = tpl_band(feature), (1 << t.band_bits) - 1, config.kinds["tpl"].cap
    samples = set(samples)
    siblings = {tpl_feature((b << t.band_bits) | ((s >> (b * t.band_bits)) & mask), t.band_bits)
                for s in samples for b in range(t.bands) if b != band}
    out: dict[str, list[int]] = {}
    for name in sorted(siblings):
        state = features.get(name)
        if state is None or "pop" in state:
            continue
        if "h" in state:
            # ``near`` without its kind check (all tpl here): that check per member made this scan 3.3x
            # slower (a 20,000-member hub: 5.8 against 1.8 ms).
            c = int(state["c"])  # type: ignore[call-overload]
            if not any(hamming(c, s) <= t.max_hamming for s in samples):
                continue
            hub: Mapping[str, Sequence[int]] = state["h"]  # type: ignore[assignment]
            found = heapq.nsmallest(cap + 1, ((ts, a, x) for a, (ts, x) in hub.items()
                                              if hamming(x, c) <= t.max_hamming))
        else:
            members: Mapping[str, Sequence[int]] = state["m"]  # type: ignore[assignment]
            found = [(ts, a, x) for a, (ts, x) in members.items()
                     if any(hamming(x, s) <= t.max_hamming for s in samples)]
        for ts, a, x in found:
            if a not in out or (ts, x) < tuple(out[a]):
                out[a] = [ts, x]
    return out


@dataclass
class FeatureUpdate:
    """What observing one feature changed: the new state (None: unchanged), new members, popularity."""

    state: dict[str, object] | None = None
    joined: list[str] = field(default_factory=list)  # new members, in event-time order
    popular_ts: int | None = None
    dropped: list[str] = field(default_factory=list)  # the members a feature made popular had before
    hub_ts: int | None = None  # the feature became a hub at this event time
    hubbed: list[str] = field(default_factory=list)  # the members it held then (their pairs are gone)
    pairs: int = 0  # (new member, existing member) pairs formed, tpl ones before the Hamming check


def observe(state: dict[str, object] | None, feature: str, seen: Iterable[Member],
            config: LinkingConfig, relatives: Mapping[str, Sequence[int]] | None = None) -> FeatureUpdate:
    """Apply sightings of ``feature`` (any order, repeats allowed) to its ``state``; see the module rules.
    ``relatives`` (``template_relatives``) count towards the cap, and join the hub it makes."""
    if state is not None and "pop" in state:
        return FeatureUpdate()
    kind = config.kinds[kind_of(feature)]
    # Event-time order, so the same sightings give the same members whatever the message order.
    ordered = sorted(seen, key=lambda m: (m[1], m[0]))
    if state is not None and "h" in state:
        return _observe_hub(state, ordered, kind.hub_cap or 0, FeatureUpdate())
    members: dict[str, list[int]] = dict(state["m"]) if state else {}  # type: ignore[call-overload]
    update = FeatureUpdate()
    relatives = relatives or {}
    for i, (account, ts, sample) in enumerate(ordered):
        if account in members:
            continue
        others = sum(1 for a in relatives if a not in members and a != account)
        if len(members) + others >= kind.cap:
            if kind.hub_cap is None:
                before = list(state["m"]) if state else []  # type: ignore[call-overload]
                return FeatureUpdate(state={"pop": ts, "n": kind.cap + 1}, popular_ts=ts, dropped=before)
            update.hub_ts, update.hubbed = ts, list(members)
            members[account] = [ts, sample]
            for a, (first, x) in sorted(relatives.items(), key=lambda r: (r[1][0], r[0])):
                if a not in members:
                    members[a] = [first, x]
                    update.joined.append(a)
            middle = centre(members, config.template.max_hamming) if kind_of(feature) == "tpl" else 0
            hub: dict[str, object] = {"h": members, "c": middle, "ts": ts}
            update.joined.append(account)
            update.state = hub
            return _observe_hub(hub, ordered[i + 1:], kind.hub_cap, update, before=list(state["m"]) if state else [])  # type: ignore[call-overload]
        update.pairs += len(members)
        members[account] = [ts, sample]
        update.joined.append(account)
        update.state = {"m": members}
    return update


def _observe_hub(state: dict[str, object], ordered: Sequence[Member], hub_cap: int, update: FeatureUpdate,
                 before: list[str] | None = None) -> FeatureUpdate:
    """Sightings of a hub: new members added in place; past ``hub_cap`` it is popular. ``before``: the
    members stage B knew when this call began (None: the hub's members)."""
    members: dict[str, list[int]] = state["h"]  # type: ignore[assignment]
    known = len(members)
    for account, ts, sample in ordered:
        if account in members:
            continue
        if len(members) >= hub_cap:  # the popular state replaces the hub, members added here included
            dropped = before if before is not None else list(members)[:known]  # (insertion order)
            return FeatureUpdate(state={"pop": ts, "n": hub_cap + 1}, popular_ts=ts, dropped=dropped)
        members[account] = [ts, sample]
        update.joined.append(account)
        update.state = state
    return update

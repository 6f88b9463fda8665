"""Stage A logic: feature → bounded set of accounts. The link evidence is derived from it (``link_state``).

State per feature (a JSON-able dict, the value of stage A's table)::

    {"m": {account: [first_ts_ms, sample]}}     # members, at most the kind's cap
    {"pop": ts_ms, "n": cap + 1}                # popular: members dropped, no more evidence

Rules, applied by ``observe`` to one message's observations of one feature:

* a new member shares the feature with every existing member (evidence of the pair
  since the later of the two first sightings); for ``tpl`` only with members whose
  sample simhash is within ``max_hamming`` bits of its own (``partners``), so
  colliding bands of unrelated prompts do not link;
* the member that would exceed the kind's cap makes the feature *popular*: its
  members are dropped (``dropped``: stage B forgets their evidence too). A popular
  feature stays popular (a big cloud ASN, a common SDK user agent).

Idempotent: observing a member again changes nothing and yields nothing, so a
re-read message after a crash never duplicates evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pipeline.linking.config import FEATURE_KINDS, LinkingConfig

Member = tuple[str, int, int]  # account, first event time (ms), sample simhash (tpl; 0 otherwise)


def kind_of(feature: str) -> str:
    """The weighted kind of a feature (``ip24:…`` and ``ip48:…`` are both ``ip``); KeyError if unknown."""
    return FEATURE_KINDS[feature.partition(":")[0]]


def hamming(x: int, y: int) -> int:
    return (x ^ y).bit_count()


def partners(members: Mapping[str, Sequence[int]], account: str, feature: str, max_hamming: int) -> list[str]:
    """The members ``account`` shares ``feature`` with as evidence (for ``tpl``: near samples only)."""
    if kind_of(feature) != "tpl":
        return [m for m in members if m != account]
    sample = members[account][1]
    return [m for m, (_, other) in members.items() if m != account and hamming(sample, other) <= max_hamming]


@dataclass
class FeatureUpdate:
    """What observing one feature changed: the new state (None: unchanged), new members, popularity."""

    state: dict[str, object] | None = None
    joined: list[str] = field(default_factory=list)  # new members, in event-time order
    popular_ts: int | None = None
    dropped: list[str] = field(default_factory=list)  # the members a feature made popular had before
    pairs: int = 0  # (new member, existing member) pairs formed, tpl ones before the Hamming check


def observe(state: dict[str, object] | None, feature: str, seen: Iterable[Member],
            config: LinkingConfig) -> FeatureUpdate:
    """Apply sightings of ``feature`` (any order, repeats allowed) to its ``state``; see the module rules."""
    if state is not None and "pop" in state:
        return FeatureUpdate()
    cap = config.kinds[kind_of(feature)].cap
    members: dict[str, list[int]] = dict(state["m"]) if state else {}  # type: ignore[call-overload]
    update = FeatureUpdate()
    # Event-time order, so the same sightings give the same members whatever the message order.
    for account, ts, sample in sorted(seen, key=lambda m: (m[1], m[0])):
        if account in members:
            continue
        if len(members) >= cap:
            before = list(state["m"]) if state else []  # type: ignore[call-overload]
            return FeatureUpdate(state={"pop": ts, "n": cap + 1}, popular_ts=ts, dropped=before)
        update.pairs += len(members)
        members[account] = [ts, sample]
        update.joined.append(account)
        update.state = {"m": members}
    return update

"""Stage A logic, without Faust: feature → bounded set of accounts, and the link evidence it yields.

State per feature (a JSON-able dict, the value of stage A's table)::

    {"m": {account: [first_ts_ms, sample]}}     # members, at most the kind's cap
    {"pop": ts_ms, "n": cap + 1}                # popular: members dropped, no more evidence

Rules, applied by ``observe`` to one message's observations of one feature:

* a new member gets an edge to every existing member (ts = the later of the two
  first sightings); for ``tpl`` only to members whose sample simhash is within
  ``max_hamming`` bits of its own, so colliding bands of unrelated prompts do not link;
* the member that would exceed the kind's cap makes the feature *popular*: its
  members are dropped, the edges of this call are not sent, and the caller emits
  a retraction so stage B forgets the feature's earlier evidence too. A popular
  feature stays popular (a big cloud ASN, a common SDK user agent).

Idempotent: observing a member again changes nothing and yields nothing, so a
re-read message after a crash never duplicates evidence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.linking.config import FEATURE_KINDS, LinkingConfig

Member = tuple[str, int, int]  # account, first event time (ms), sample simhash (tpl; 0 otherwise)


def kind_of(feature: str) -> str:
    """The weighted kind of a feature (``ip24:…`` and ``ip48:…`` are both ``ip``); KeyError if unknown."""
    return FEATURE_KINDS[feature.partition(":")[0]]


def hamming(x: int, y: int) -> int:
    return (x ^ y).bit_count()


@dataclass
class FeatureUpdate:
    """What observing one feature changed: the new state (None: unchanged), edges, popularity."""

    state: dict[str, object] | None = None
    edges: list[tuple[str, str, int]] = field(default_factory=list)  # (a, b, ts) with a < b
    popular_ts: int | None = None


def observe(state: dict[str, object] | None, feature: str, seen: Iterable[Member],
            config: LinkingConfig) -> FeatureUpdate:
    """Apply sightings of ``feature`` (any order, repeats allowed) to its ``state``; see the module rules."""
    if state is not None and "pop" in state:
        return FeatureUpdate()
    kind = kind_of(feature)
    cap = config.kinds[kind].cap
    max_hamming = config.template.max_hamming
    members: dict[str, list[int]] = dict(state["m"]) if state else {}  # type: ignore[call-overload]
    update = FeatureUpdate()
    # Event-time order, so the same sightings give the same edges whatever the message order.
    for account, ts, sample in sorted(seen, key=lambda m: (m[1], m[0])):
        if account in members:
            continue
        if len(members) >= cap:
            return FeatureUpdate(state={"pop": ts, "n": cap + 1}, popular_ts=ts)
        for other, (other_ts, other_sample) in members.items():
            if kind == "tpl" and hamming(sample, other_sample) > max_hamming:
                continue
            a, b = (account, other) if account < other else (other, account)
            update.edges.append((a, b, max(ts, other_ts)))
        members[account] = [ts, sample]
        update.state = {"m": members}
    return update

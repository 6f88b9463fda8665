"""One active linking process per consumer group: a Kafka partition assignor that gives
every partition to ONE member of ``<group>.linking`` and keeps them there.

``SingleOwnerAssignor.assign`` (run by the group leader) gives all partitions to one member; the
others stay hot standbys. Sticky: the owner's claim (with its ownership epoch) travels in its
join metadata (``user_data``); without a claim the lowest member id owns under the next epoch,
and of two claims the higher epoch wins. Why and how: docs/linking.md ("Topology": One active
process per group).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

log = logging.getLogger(__name__)

ASSIGNOR_NAME = "dw-single-owner"


@dataclass(frozen=True)
class Claim:
    """What a member says when it joins: whether it owns the partitions, and its last epoch seen."""

    owns: bool
    epoch: int

    def encode(self) -> bytes:
        return orjson.dumps({"owns": self.owns, "epoch": self.epoch})

    @classmethod
    def decode(cls, data: bytes | None) -> Claim:
        """A member without (readable) metadata claims nothing: it is another assignor's or broken."""
        try:
            found = orjson.loads(data or b"{}")
            return cls(bool(found.get("owns")), int(found.get("epoch", 0)))
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            return cls(False, 0)


@dataclass(frozen=True)
class Decision:
    """The outcome of one assignment, as every member receives it."""

    owner: str
    epoch: int
    members: int

    def encode(self) -> bytes:
        return orjson.dumps({"owner": self.owner, "epoch": self.epoch, "members": self.members})

    @classmethod
    def decode(cls, data: bytes | None) -> Decision | None:
        try:
            found = orjson.loads(data or b"{}")
            return cls(str(found["owner"]), int(found["epoch"]), int(found["members"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def choose_owner(claims: Mapping[str, Claim]) -> Decision:
    """The claimant of the highest epoch (ties: lowest member id) keeps the partitions, in its
    epoch; without a claimant the lowest member id takes them under a new epoch."""
    if not claims:
        raise ValueError("no members to choose an owner from")
    owners = [(-claim.epoch, member) for member, claim in claims.items() if claim.owns]
    if owners:
        neg_epoch, owner = min(owners)
        return Decision(owner, -neg_epoch, len(claims))
    return Decision(min(claims), 1 + max(claim.epoch for claim in claims.values()), len(claims))


class SingleOwnerAssignor(AbstractPartitionAssignor):
    """Every partition to one member, sticky (module docstring). An *instance* goes into
    ``AIOKafkaConsumer(partition_assignment_strategy=(assignor,))``: aiokafka calls
    ``metadata``/``assign``/``on_assignment`` on the object, which remembers this member's claim."""

    name = ASSIGNOR_NAME
    version = 0

    def __init__(self) -> None:
        self.owns = False
        self.epoch = 0
        self.decision: Decision | None = None

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), Claim(self.owns, self.epoch).encode())

    def assign(self, cluster: ClusterMetadata,
               members: Mapping[str, ConsumerProtocolMemberMetadata]) -> dict[str, ConsumerProtocolMemberAssignment]:
        decision = choose_owner({member: Claim.decode(meta.user_data) for member, meta in members.items()})
        topics = sorted({topic for meta in members.values() for topic in meta.subscription})
        everything = []
        for topic in topics:
            partitions = cluster.partitions_for_topic(topic)
            if partitions is None:
                log.warning("linking assignor: no partition metadata for topic %s", topic)
                continue
            everything.append((topic, sorted(partitions)))
        log.info("linking assignor: owner %s (epoch %d, %d members)", decision.owner, decision.epoch,
                 decision.members)
        return {member: ConsumerProtocolMemberAssignment(self.version, everything if member == decision.owner else [],
                                                         decision.encode())
                for member in members}

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        self.owns = bool(assignment.partitions())
        self.decision = Decision.decode(assignment.user_data)
        if self.decision is not None:
            self.epoch = max(self.epoch, self.decision.epoch)

"""Names of the linking topics of one consumer group (every group, e.g. a replay, has its own).

``observations`` (N partitions, by feature) and ``edges`` (1 partition: account updates,
drain markers) are written by the detect workers and read by the linking process;
``results`` (1 partition) carries its ``LinkResult`` messages back to the workers;
``state`` (1 partition, compacted) holds its checkpoint (``checkpoint`` module);
``feedback`` (1 partition, compacted) carries the analysts' verdicts the workers loaded
to it (``feedback_feed`` module).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkTopics:
    observations: str = "dw-link-observations"
    edges: str = "dw-link-edges"
    results: str = "dw-link-results"
    state: str = "dw-link-state"
    feedback: str = "dw-link-feedback"

    @classmethod
    def for_group(cls, group: str) -> LinkTopics:
        """``<group>-link-observations``, ``-link-edges``, ``-link-results``, ``-link-state``, ``-link-feedback``."""
        return cls(f"{group}-link-observations", f"{group}-link-edges", f"{group}-link-results",
                   f"{group}-link-state", f"{group}-link-feedback")

    def partitions(self, observation_partitions: int) -> dict[str, int]:
        """Topic -> partition count, for ``pipeline.topics.ensure_topics(settings, extra=...)``.

        ensure_topics creates ``state`` and ``feedback`` compacted (they are in ``compacted``)."""
        return {self.observations: observation_partitions, self.edges: 1, self.results: 1, self.state: 1,
                self.feedback: 1}

    @property
    def compacted(self) -> frozenset[str]:
        """The topics that keep only the latest record per key."""
        return frozenset({self.state, self.feedback})

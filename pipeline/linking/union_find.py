"""Union-find over integer ids in NumPy arrays: the linking state's clusters without a dict per account."""

from __future__ import annotations

import numpy as np


class UnionFind:
    """Disjoint sets of ids ``0..n-1`` (union by size, path halving); arrays grow by doubling."""

    def __init__(self, n: int = 0) -> None:
        self.parent = np.arange(max(n, 16), dtype=np.int32)
        self.size = np.ones(max(n, 16), dtype=np.int32)
        self.n = n

    def add(self) -> int:
        """A new singleton id."""
        if self.n == len(self.parent):
            grown = 2 * self.n
            self.parent = np.concatenate([self.parent, np.arange(self.n, grown, dtype=np.int32)])
            self.size = np.concatenate([self.size, np.ones(grown - self.n, dtype=np.int32)])
        self.n += 1
        return self.n - 1

    def find(self, x: int) -> int:
        parent = self.parent
        while (p := int(parent[x])) != x:
            parent[x] = parent[p]
            x = int(parent[x])
        return x

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return ra

    def labels(self) -> np.ndarray:
        """Every id's root, vectorised (pointer jumping until no parent moves)."""
        labels = self.parent[: self.n]
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                return labels
            labels = jumped

"""Synthetic fleets sharing one prompt template, as stage A/B messages: the hub tests' and bench's builders.

A template's accounts send near-duplicate prompts: each member's sample is the template's simhash with
a few bits flipped (at most ``FLIP`` bits, so any two are within 2 × ``FLIP`` ≤ ``max_hamming``). Each
member is seen once with each of the template's band features (``tpl:<band>:<value>``), at its own
first-sighting time, and sends frames of the pooled counters (``pooled.POOLED``) at its own pace.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.linking.messages import (
    FRAME_COUNTERS,
    AccountUpdates,
    EndMarker,
    MemberChanges,
    Message,
    ObservationBatch,
)
from pipeline.linking.pooled import MINUTE_MS, POOLED
from pipeline.linking.stages import FeatureStage

T0 = 29_000_000  # epoch minute of the first frame
FLIP = 3
SRC = "w"

Counters = Callable[[int], tuple[int, ...]]  # calls in a minute -> the POOLED counters of that minute


def extractor(calls: int) -> tuple[int, ...]:
    """A chain-of-thought harvester's minute: short prompts, long answers, reasoning asked for on most calls."""
    return (calls, 150 * calls, 700 * calls, 900 * calls, calls, 0, 0)


def benign(calls: int) -> tuple[int, ...]:
    """A customer's app: long prompts, short answers, little reasoning."""
    return (calls, 1200 * calls, 300 * calls, 0, 0, 0, 0)


def template_features(template: int, bands: int = 4, band_bits: int = 16) -> list[str]:
    """The band features a prompt of ``template`` is seen with (as ``observations`` names them)."""
    mask = (1 << band_bits) - 1
    return [f"tpl:{b}:{(template >> (b * band_bits)) & mask:04x}" for b in range(bands)]


@dataclass
class Fleet:
    """Accounts sharing a template: when each is first seen, its sample, its frames and its own max score."""

    members: list[str]
    features: list[str]
    samples: dict[str, int]
    first_ms: dict[str, int]
    frames: list[tuple[str, int, tuple[int, ...]]]  # (account, epoch minute, POOLED counters)
    own_score: float


def template_fleet(prefix: str, size: int, *, counters: Counters, every: int = 10, minutes: int = 90,
                   own_score: float = 8.0, seed: int = 17, join_spread_s: int = 3_000) -> Fleet:
    """``size`` accounts sharing one template, first seen over ``join_spread_s`` seconds, each with one call
    every ``every`` minutes (a low-volume account: under every per-account volume gate) for ``minutes``."""
    rng = random.Random(seed)
    template = rng.getrandbits(64)
    members = [f"{prefix}-{i:05d}" for i in range(size)]
    samples = {}
    for m in members:
        sample = template
        for bit in rng.sample(range(64), rng.randint(0, FLIP)):
            sample ^= 1 << bit
        samples[m] = sample
    first_ms = {m: T0 * MINUTE_MS + (i * join_spread_s * 1000) // max(size, 1) for i, m in enumerate(members)}
    frames = [(m, T0 + t, counters(1)) for i, m in enumerate(members) for t in range(minutes) if (t + i) % every == 0
              and (T0 + t + 1) * MINUTE_MS > first_ms[m]]
    return Fleet(members, template_features(template), samples, first_ms, frames, own_score)


def observations(fleet: Fleet, chunk: int, seed: int | None = None) -> list[ObservationBatch]:
    """The fleet's sightings of its template features as observation messages of ``chunk`` sightings each,
    in first-sighting order, or shuffled across messages with ``seed``."""
    rows = [(f, m) for m in fleet.members for f in fleet.features]
    if seed is not None:
        random.Random(seed).shuffle(rows)
    out = []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        features = sorted({f for f, _ in part})
        accounts = sorted({m for _, m in part})
        fi, ai = {f: i for i, f in enumerate(features)}, {a: i for i, a in enumerate(accounts)}
        out.append(ObservationBatch(SRC, start, features, accounts, [fi[f] for f, _ in part], [ai[m] for _, m in part],
                                    [fleet.first_ms[m] for _, m in part], [fleet.samples[m] for _, m in part]))
    return out


def account_updates(frames: Sequence[tuple[str, int, tuple[int, ...]]], scores: dict[str, float],
                    chunk: int) -> list[AccountUpdates]:
    """Account updates carrying ``frames`` (each frame's calls added to its account, its own max score stepped
    at the frame's end), ``chunk`` frames per message."""
    out = []
    for start in range(0, len(frames), chunk):
        part = frames[start:start + chunk]
        names = sorted({a for a, _, _ in part})
        code = {a: i for i, a in enumerate(names)}
        cols = np.asarray([c for _, _, c in part], np.int64).reshape(len(part), len(POOLED))
        calls = dict.fromkeys(names, 0)
        last = dict.fromkeys(names, 0)
        for a, minute, c in part:
            calls[a] += c[0]
            last[a] = max(last[a], (minute + 1) * MINUTE_MS)
        out.append(AccountUpdates(
            SRC, names, [calls[a] for a in names], [last[a] for a in names], [scores[a] for a in names],
            [scores[a] for a in names], [scores[a] for a in names], [last[a] for a in names],
            [code[a] for a, _, _ in part], [m for _, m, _ in part], cols[:, 0].tolist(),
            {name: cols[:, i + 1].tolist() for i, name in enumerate(FRAME_COUNTERS)}))
    return out


def pair_card(features: dict[str, dict[str, object]], stage: FeatureStage, card: str, accounts: Sequence[str],
              ts: int) -> MemberChanges:
    """``accounts`` seen with one payment card at ``ts`` (a company's, a reseller's)."""
    n = len(accounts)
    return stage.handle(ObservationBatch(SRC, 0, [card], list(accounts), [0] * n, list(range(n)), [ts] * n, [0] * n))


def drain_markers() -> list[Message]:
    """The end markers of a one-partition bounded run (stage B ``drain_sources=[SRC]``, ``partitions=1``)."""
    return [EndMarker(SRC, 0), EndMarker(SRC, None)]

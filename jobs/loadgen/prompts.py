"""Prompt fingerprints without prompt text: 64-bit prompt hashes and SimHashes drawn directly.

A fresh prompt gets a random ``prompt_hash`` (distinct text). Its ``prompt_simhash`` is
either random (free-form text: about 32 of 64 bits differ from any other prompt) or a
template's base SimHash with a few bits flipped, which is what SimHash gives prompts
that share most of their word 3-shingles. Repeated prompts come from a per-account
pool, so a repeat carries the same hash, SimHash, topic, reasoning flag and length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MAX_FLIPS = 24


def pick(rng: np.random.Generator, cum: np.ndarray, n: int) -> np.ndarray:
    """``n`` indices drawn with the probabilities whose cumulative sum is ``cum``."""
    idx = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
    return np.minimum(idx, cum.size - 1)


def zipf_cum(n: int, skew: float) -> np.ndarray:
    """Cumulative Zipf popularity over ``n`` items (``skew`` 0 is uniform)."""
    return np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -skew)


def random64(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.bit_generator.random_raw(n).astype(np.uint64, copy=False)


def flip_masks(rng: np.random.Generator, n: int, mean_bits: float) -> np.ndarray:
    """64-bit masks with about ``mean_bits`` set bits each (Poisson count)."""
    counts = np.minimum(rng.poisson(mean_bits, n), _MAX_FLIPS)
    width = int(counts.max()) if n else 0
    if width == 0:
        return np.zeros(n, dtype=np.uint64)
    positions = rng.integers(0, 64, (n, width), dtype=np.uint64)
    bits = np.left_shift(np.uint64(1), positions)
    bits[np.arange(width) >= counts[:, None]] = 0
    return np.bitwise_or.reduce(bits, axis=1)


@dataclass(frozen=True, slots=True)
class PromptSource:
    """How one account writes new prompts."""

    templates: np.ndarray  # uint64 SimHash bases
    template_tokens: np.ndarray  # median prompt tokens of each template
    template_share: float
    flip_bits: float
    topics: np.ndarray  # indices into TOPICS
    topic_cum: np.ndarray
    reasoning_share: float
    tokens: tuple[float, float]  # lognormal (median, sigma) of free-form prompt tokens


@dataclass(frozen=True, slots=True)
class PromptBatch:
    phash: np.ndarray  # uint64
    shash: np.ndarray  # uint64
    topic: np.ndarray  # int16
    reason: np.ndarray  # bool
    tokens: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.phash.size)


def fresh(rng: np.random.Generator, source: PromptSource, n: int) -> PromptBatch:
    phash = random64(rng, n)
    shash = random64(rng, n)
    median, sigma = source.tokens
    tokens = median * rng.lognormal(0.0, sigma, n)
    if source.templates.size and source.template_share > 0:
        templated = np.flatnonzero(rng.random(n) < source.template_share)
        which = rng.integers(0, source.templates.size, templated.size)
        shash[templated] = source.templates[which] ^ flip_masks(rng, templated.size, source.flip_bits)
        # A template fixes most of the text, so lengths cluster tightly around it.
        tokens[templated] = source.template_tokens[which] * rng.lognormal(0.0, 0.15, templated.size)
    return PromptBatch(
        phash=phash,
        shash=shash,
        topic=source.topics[pick(rng, source.topic_cum, n)].astype(np.int16),
        reason=rng.random(n) < source.reasoning_share,
        tokens=np.clip(np.rint(tokens), 1, 128_000).astype(np.int64),
    )


@dataclass(frozen=True, slots=True)
class PromptPool:
    """Prompts an account sends again and again, by popularity or as an ordered sweep."""

    prompts: PromptBatch
    cum: np.ndarray  # cumulative popularity (unused for sweeps)
    sweep: bool

    def take(self, rng: np.random.Generator, n: int, cursor: int) -> tuple[np.ndarray, int]:
        """Indices of ``n`` pooled prompts and the sweep cursor after them."""
        size = len(self.prompts)
        if self.sweep:
            return (cursor + np.arange(n)) % size, (cursor + n) % size
        return pick(rng, self.cum, n), cursor

"""Perturbed copies of the archetypes: the generalisation check of ``distillwatch eval --vary-seeds``.

The detection was tuned on the default archetypes. A varied scenario draws, from a seed,
new values for every archetype's numbers (volume, regularity, diurnal shape, batch sizes,
token sizes, shares, pool and template counts, IP/prefix/key counts, choice weights, how
much and how soon traffic moves to the newly released model, a reseller's egress size and
card share, a campaign's waves, a company's size and cron, a quiet account's absolute rate) and a
new fleet size and account mix (a one-fleet campaign's size moving widest), so thresholds that only
fit the default numbers show up.

Each archetype stays recognisably itself: a share moves in log-odds (0 and 1 stay put, so a
field an archetype never sends stays absent), counts and sizes move by a bounded factor,
and the qualitative markers (which fields are sent, the sweep order, the network types,
the user agents, the languages prompts are written in, attack or not) are kept. The ranges
are in ``RANGES`` and docs/evaluation.md.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Final

import numpy as np

from jobs.loadgen.archetypes import (
    ARCHETYPES,
    Archetype,
    Choice,
    Content,
    Cron,
    Network,
    Pivot,
    Prompts,
    Reseller,
    Sampling,
    Timing,
    Waves,
)

_BRANCH: Final = 3  # SeedSequence branch: independent of population (0, 1) and delivery (2)


@dataclass(frozen=True, slots=True)
class Ranges:
    """How far a varied scenario moves each kind of parameter (factors are drawn log-uniformly)."""

    volume: float = 2.0  # traffic share per account: x1/2 .. x2
    regularity: float = 1.6  # gamma shape of inter-arrival gaps
    batch: float = 2.0  # events per batch
    tokens: float = 2.0  # median prompt, completion and reasoning tokens
    sigma: float = 1.25  # lognormal spreads (token sizes, volume across accounts)
    counts: float = 1.5  # pools, templates, prefixes, IPs, keys, logit-bias sizes
    flip_bits: float = 1.4  # how far templated prompts stray from their base
    scalar: float = 1.3  # weekend, rests, duty, cot boost, IP switching and skew
    log_odds: float = 0.8  # shares (reasoning, logprobs, logit bias, templates, repeats, stream, ...)
    weights: float = 0.3  # lognormal sigma on choice, topic and status weights
    hour_gamma: float = 1.6  # diurnal curve raised to a power in [1/g, g]: flatter or peakier
    hour_shift: int = 2  # diurnal curve shifted by up to this many hours
    hour_noise: float = 0.15  # lognormal sigma per hour of the diurnal curve
    tz_shift: int = 2  # every UTC offset moved by up to this many hours
    mix: float = 1.6  # accounts per archetype
    one_fleet: float = 2.0  # accounts of a one-fleet archetype (low_and_slow_fleet): its fleet's size
    fleet_size: tuple[int, int] = (6, 24)  # accounts per fleet (default 12)
    pivot_lag: float = 2.0  # time from the new model's release to an account's move to it
    waves: float = 1.6  # a campaign's active blocks and lulls (minutes)
    cron: float = 1.6  # a company's cron period (minutes) and run length (seconds)


RANGES: Final = Ranges()


class _Draw:
    """The perturbations, drawn from one generator in a fixed order."""

    def __init__(self, rng: np.random.Generator, ranges: Ranges) -> None:
        self.rng, self.r = rng, ranges

    def factor(self, span: float) -> float:
        return float(math.exp(self.rng.uniform(-math.log(span), math.log(span))))

    def share(self, p: float) -> float:
        if p <= 0.0 or p >= 1.0:
            return p
        shifted = math.log(p / (1.0 - p)) + self.rng.uniform(-self.r.log_odds, self.r.log_odds)
        return 1.0 / (1.0 + math.exp(-shifted))

    def shares(self, bounds: tuple[float, float]) -> tuple[float, float]:
        """Both ends of a range of shares moved by one shift in log-odds."""
        shift = self.rng.uniform(-self.r.log_odds, self.r.log_odds)
        lo, hi = (p if p <= 0.0 or p >= 1.0 else 1.0 / (1.0 + math.exp(-(math.log(p / (1.0 - p)) + shift)))
                  for p in bounds)
        return lo, hi

    def count(self, bounds: tuple[int, int], span: float) -> tuple[int, int]:
        """Both ends scaled by one factor; a zero stays zero, a positive end stays >= 1."""
        f = self.factor(span)
        lo, hi = (0 if b == 0 else max(1, round(b * f)) for b in bounds)
        return lo, max(lo, hi)

    def lognormal(self, spec: tuple[float, float]) -> tuple[float, float]:
        return spec[0] * self.factor(self.r.tokens), spec[1] * self.factor(self.r.sigma)

    def choice(self, options: Choice) -> Choice:
        noise = self.rng.lognormal(0.0, self.r.weights, len(options))
        return tuple((value, weight * float(n)) for (value, weight), n in zip(options, noise, strict=True))

    def weights(self, mapping: Mapping[str, float]) -> MappingProxyType[str, float]:
        noise = self.rng.lognormal(0.0, self.r.weights, len(mapping))
        return MappingProxyType({k: v * float(n) for (k, v), n in zip(mapping.items(), noise, strict=True)})

    def hourly(self, curve: tuple[float, ...]) -> tuple[float, ...]:
        gamma = self.factor(self.r.hour_gamma)
        shift = int(self.rng.integers(-self.r.hour_shift, self.r.hour_shift + 1))
        noise = self.rng.lognormal(0.0, self.r.hour_noise, len(curve))
        shaped = np.roll(np.asarray(curve, dtype=np.float64) ** gamma, shift) * noise
        return tuple(round(float(v), 4) for v in shaped)

    def rates(self, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        """Both ends of an absolute rate scaled by one factor (the volume's range); None stays None, undrawn."""
        if bounds is None:
            return None
        f = self.factor(self.r.volume)
        return bounds[0] * f, bounds[1] * f

    def tz(self, offsets: tuple[int, ...]) -> tuple[int, ...]:
        shift = int(self.rng.integers(-self.r.tz_shift, self.r.tz_shift + 1))
        return tuple(sorted({max(-12, min(14, tz + shift)) for tz in offsets}))

    def apply(self, kind: str, value: Any) -> Any:
        """One field moved as ``kind`` says: a method name, or ``how:range`` with a ``Ranges`` field."""
        how, _, span_name = kind.partition(":")
        if not span_name:
            return getattr(self, how)(value)
        if value is None:
            return None
        span = getattr(self.r, span_name)
        if how == "count":
            return self.count(value, span)
        moved = value * self.factor(span)
        return {"scale": moved, "at_most_1": min(1.0, moved), "at_least_1": max(1.0, moved)}[how]


# How each field of each part of an archetype moves (fields not named are kept as they are).
_FIELDS: Final[Mapping[type, Mapping[str, str]]] = MappingProxyType({
    Timing: {"hourly": "hourly", "regularity": "scale:regularity", "weekend": "scale:scalar",
             "rest_prob": "share", "rest_scale": "scale:scalar", "batch": "count:batch",
             "duty": "at_most_1:scalar", "tz": "tz"},
    Prompts: {"repeat_share": "share", "pool": "count:counts", "pool_skew": "scale:scalar",
              "templates": "count:counts", "template_share": "share", "flip_bits": "scale:flip_bits"},
    Content: {"topics": "weights", "reasoning_share": "share", "prompt_tokens": "lognormal",
              "completion_tokens": "lognormal", "reasoning_tokens": "lognormal",
              "cot_boost": "at_least_1:scalar", "endpoints": "choice", "models": "choice"},
    Sampling: {"temperature": "choice", "top_p": "choice", "n": "choice", "max_tokens": "choice",
               "logprobs": "share", "top_logprobs": "choice", "logit_bias": "share",
               "logit_bias_range": "count:counts", "stream": "share"},
    Network: {"types": "weights", "prefixes": "count:counts", "ips": "count:counts",
              "switch": "at_most_1:scalar", "skew": "scale:scalar", "ipv6_share": "share",
              "unknown_share": "share", "keys": "count:counts", "payment_missing": "share"},
    Pivot: {"share": "shares", "lag_s": "count:pivot_lag", "trial": "share"},
    Reseller: {"card_share": "share"},
    Waves: {"active_min": "count:waves", "lull_min": "count:waves", "intensity_sigma": "scale:sigma",
            "lull_level": "share"},
    Cron: {"accounts": "count:counts", "period_min": "count:cron", "burst_s": "count:cron"},
    Archetype: {"volume": "scale:volume", "volume_sigma": "scale:sigma", "status": "choice",
                "calls_per_min": "rates"},
})


def _moved(d: _Draw, record: Any) -> Any:
    fields = _FIELDS[type(record)]
    return replace(record, **{name: d.apply(kind, getattr(record, name)) for name, kind in fields.items()})


def vary_archetype(a: Archetype, rng: np.random.Generator, ranges: Ranges = RANGES) -> Archetype:
    """A perturbed copy of ``a``: same name, kind and markers, new numbers."""
    d = _Draw(rng, ranges)
    parts = {part: _moved(d, getattr(a, part)) for part in ("timing", "prompts", "content", "sampling", "network")}
    for part in ("pivot", "campaign", "cron"):  # after the rest: an archetype without them draws as before
        if getattr(a, part) is not None:
            parts[part] = _moved(d, getattr(a, part))
    return replace(_moved(d, a), **parts)


def vary_reseller(r: Reseller, rng: np.random.Generator, ranges: Ranges = RANGES) -> Reseller:
    """A perturbed copy of ``r``: its egress (/24s, exit addresses) and card share; same provider type and agents."""
    d = _Draw(rng, ranges)
    return replace(_moved(d, r), egress=_moved(d, r.egress))


def _rng(seed: int, *path: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _BRANCH, *path]))


def _stream(name: str) -> int:
    """An archetype's own stream number, from its name (not its position among the others)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big")


def varied_archetypes(seed: int, ranges: Ranges = RANGES,
                      base: Mapping[str, Archetype] = ARCHETYPES) -> MappingProxyType[str, Archetype]:
    """Every archetype perturbed; each from its own stream, so adding one leaves the others unchanged.

    A reseller is varied once, from its own stream, and stays shared by the archetypes naming it.
    """
    resellers = {a.reseller.name: a.reseller for a in base.values() if a.reseller is not None}
    moved = {name: vary_reseller(r, _rng(seed, _stream(f"reseller:{name}")), ranges)
             for name, r in sorted(resellers.items())}
    varied = {name: vary_archetype(a, _rng(seed, _stream(name)), ranges) for name, a in sorted(base.items())}
    return MappingProxyType({
        name: a if a.reseller is None else replace(a, reseller=moved[a.reseller.name]) for name, a in varied.items()
    })


def mix_factors(seed: int, names: Iterable[str], ranges: Ranges = RANGES) -> dict[str, float]:
    """A factor on the account count of each archetype (jobs/eval/scenario.py applies it), each from its own stream;
    a one-fleet archetype's count is its fleet's size, moved over the wider ``ranges.one_fleet``."""
    def span(name: str) -> float:
        return ranges.one_fleet if name in ARCHETYPES and ARCHETYPES[name].one_fleet else ranges.mix

    return {name: _Draw(_rng(seed, 10_000, _stream(name)), ranges).factor(span(name)) for name in sorted(names)}


def varied_fleet_size(seed: int, ranges: Ranges = RANGES) -> int:
    lo, hi = ranges.fleet_size
    return int(_rng(seed, 10_001).integers(lo, hi + 1))

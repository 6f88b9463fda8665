"""A seeded traffic scenario: which accounts exist, and the stream of their API calls.

``generate`` walks event time in slices: every account stream hands over its calls
for the slice, they are merged into time order, optionally delayed (out-of-order
delivery) and rendered. Memory is bounded by one slice plus a chunk per account (and an
epoch of the sparse accounts' calls, below). The same config (seed included) always yields
byte-identical events.

Accounts that call less than a few times per slice (hobbyists, a low-and-slow fleet's thousands of
members) are not asked slice by slice: their calls are taken an epoch of slices at a time and merged
once (``_Sparse``). Calls are ordered by event time, then account, whichever path they took.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict
from itertools import chain
from pathlib import Path
from types import MappingProxyType
from typing import Final

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobs.loadgen.archetypes import ARCHETYPES, NEW_MODEL
from jobs.loadgen.behaviour import EVENT_DTYPE, AccountStream, choice_tables, concat
from jobs.loadgen.population import Label, Population, build_population
from jobs.loadgen.render import GeneratedEvent, Renderer
from jobs.loadgen.sink import produce_kafka, write_jsonl
from jobs.loadgen.variation import varied_archetypes
from schemas.event import TS_MAX_MS, TS_MIN_MS

# Accounts per archetype: mostly benign, a few attackers, one hydra fleet of 12, one template fleet of 12.
# Two of the attacks and two of the hard negatives belong to the 2026 campaign patterns: moving to a
# newly released model (model_pivot; early_adopter) and writing in another language
# (multilingual_sweeper; non_english_app). One reseller fronts 64 accounts: 60 low-rate legitimate customers
# and 4 distillers calling at a customer's rate (its thousands of accounts: a larger mix, e.g. eval --mix-scale 20).
# One synchronised fleet of 12 (a campaign whose members share nothing but its waves) and, as its hard negative,
# 12 accounts of one or two companies whose accounts fire together on a cron. One low-and-slow campaign of 100
# quiet accounts (one fleet, at absolute rates): more than linking's template cap, so only its template hubs link it.
DEFAULT_MIX: Final = MappingProxyType(
    {
        "chat_app": 40,
        "batch_summarizer": 6,
        "classifier_pipeline": 10,
        "eval_harness": 5,
        "coding_assistant": 8,
        "hobbyist": 150,
        "label_calibrator": 3,
        "nightly_summarizer": 3,
        "reasoning_harvester": 2,
        "capability_sweeper": 2,
        "hydra_fleet": 12,
        "proxy_router": 1,
        "logprob_miner": 2,
        "programmatic_scraper": 2,
        "logit_stealer": 1,
        "template_fleet": 12,
        "early_adopter": 4,
        "non_english_app": 4,
        "model_pivot": 2,
        "multilingual_sweeper": 2,
        "reseller_customer": 60,
        "reseller_distiller": 4,
        "synchronised_fleet": 12,
        "cron_company": 12,
        "low_and_slow_fleet": 100,
    }
)
DEFAULT_START_MS: Final = 1_770_854_400_000  # 2026-02-12T00:00:00Z
_EVENTS_PER_SLICE = 20_000  # big enough to amortise numpy calls, small enough to stay cache-friendly
_SPARSE_CALLS_PER_SLICE = 4.0  # an account expecting fewer calls per slice is taken an epoch at a time
_EPOCH_EVENTS = 400_000  # events of an epoch of slices (20 slices)
_DELIVERY = 2  # SeedSequence branch for jitter and timestamp formats


class ScenarioConfig(BaseModel):
    """Everything that determines a scenario's traffic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=7, ge=0, description="same seed and settings give byte-identical events")
    start_ms: int = Field(default=DEFAULT_START_MS, description="event time of the first slice, epoch milliseconds")
    duration_s: float = Field(default=3600.0, gt=0, le=366 * 86_400, description="event-time length of the scenario")
    rate_eps: float = Field(default=200.0, gt=0, le=10_000_000, description="mean events per event-time second")
    mix: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_MIX), description="accounts per archetype name"
    )
    fleet_size: int = Field(default=12, ge=2, le=10_000, description="accounts per fleet for fleet archetypes")
    jitter_fraction: float = Field(default=0.0, ge=0, le=1, description="share of events delivered late")
    jitter_max_s: float = Field(default=0.0, ge=0, le=86_400, description="late events arrive up to this much later")
    rfc3339_fraction: float = Field(default=0.0, ge=0, le=1, description="share of events with an RFC 3339 ts string")
    vary_seed: int | None = Field(default=None, ge=0, description="perturb every archetype's parameters "
                                  "from this seed (jobs/loadgen/variation.py); None: the archetypes as defined")
    profile_start_ms: int | None = Field(
        default=None, description="the accounts' days and weeks run as if the scenario began at this time, "
        "epoch milliseconds (a live run stamped now with a fixed hour and weekday's traffic); None: start_ms")
    release_fraction: float = Field(default=0.5, ge=0, le=1, description=f"{NEW_MODEL} is released at this "
                                    "fraction of the duration: no call uses it before (see release_s)")

    @field_validator("mix")
    @classmethod
    def _check_mix(cls, mix: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(mix) - set(ARCHETYPES))
        if unknown:
            raise ValueError(f"unknown archetypes {unknown}; known: {sorted(ARCHETYPES)}")
        if any(count < 0 for count in mix.values()):
            raise ValueError("account counts must be >= 0")
        if sum(mix.values()) == 0:
            raise ValueError("the mix needs at least one account")
        return {name: count for name, count in mix.items() if count}

    @model_validator(mode="after")
    def _check_window(self) -> ScenarioConfig:
        if not TS_MIN_MS <= self.start_ms <= TS_MAX_MS - self.duration_s * 1000 - self.jitter_max_s * 1000:
            raise ValueError("the scenario must lie between 2000-01-01 and 2100-01-01")
        return self

    @property
    def profile_start_s(self) -> float:
        """Where the accounts' weekly curves start, in epoch seconds (see ``profile_start_ms``)."""
        return (self.start_ms if self.profile_start_ms is None else self.profile_start_ms) / 1000.0

    @property
    def release_s(self) -> float:
        """When NEW_MODEL is released, in seconds of event time after ``start_ms``."""
        return self.duration_s * self.release_fraction

    @property
    def expected_events(self) -> int:
        return round(self.rate_eps * self.duration_s)

    def fingerprint(self) -> str:
        """Short hash of the whole config: the prefix of every event id."""
        # Left out when unset, so scenarios from before the field keep their event ids.
        exclude = {"profile_start_ms"} if self.profile_start_ms is None else None
        canonical = orjson.dumps(self.model_dump(exclude=exclude), option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(canonical, digest_size=4).hexdigest()


def with_accounts(mix: Mapping[str, int], accounts: Iterable[str]) -> dict[str, int]:
    """``mix`` with each ``NAME=COUNT`` of ``accounts`` adding or setting that archetype's account count
    (the ``--accounts`` option of ``eval`` and ``loadgen``); ValueError names what is wrong."""
    out = dict(mix)
    for item in accounts:
        name, sep, count = (part.strip() for part in item.partition("="))
        if not sep or not count.isdigit():
            raise ValueError(f"--accounts: expected NAME=COUNT, got {item!r}")
        if name not in ARCHETYPES:
            raise ValueError(f"--accounts: unknown archetypes [{name!r}]; known: {sorted(ARCHETYPES)}")
        out[name] = int(count)
    return out


_built: tuple[str, Population] | None = None  # the last population: labels and events of one config share it


def population(config: ScenarioConfig) -> Population:
    """The scenario's accounts, built once per config (the last one is kept: treat it as read-only)."""
    global _built
    key = config.model_dump_json()
    if _built is None or _built[0] != key:
        _built = None  # free the previous one first: a 20,000-account fleet's is large
        _built = key, build_population(
            config.seed,
            config.mix,
            fleet_size=config.fleet_size,
            start_s=config.profile_start_s,
            duration_s=config.duration_s,
            rate_eps=config.rate_eps,
            archetypes=ARCHETYPES if config.vary_seed is None else varied_archetypes(config.vary_seed),
        )
    return _built[1]


def labels(config: ScenarioConfig) -> dict[str, Label]:
    """Ground truth per account id: archetype, attack or not, fleet id, reseller id, company id."""
    return population(config).labels()


def write_labels(config: ScenarioConfig, path: Path | str) -> int:
    """Write ``{account_id: {archetype, is_attack, fleet_id, reseller_id, company_id}}`` as JSON; returns the
    account count."""
    mapping = {account_id: asdict(label) for account_id, label in sorted(labels(config).items())}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(orjson.dumps(mapping, option=orjson.OPT_INDENT_2) + b"\n")
    return len(mapping)


def generate(config: ScenarioConfig) -> Iterator[GeneratedEvent]:
    """The scenario's events, in event-time order except for configured late delivery."""
    # chain hands out the events from C: no Python generator frame per event.
    return chain.from_iterable(generate_batches(config))


def generate_batches(config: ScenarioConfig) -> Iterator[list[GeneratedEvent]]:
    """The events of :func:`generate`, one list per event-time slice (about 20k events)."""
    pop = population(config)
    start_s = config.profile_start_s
    slice_s = float(np.clip(_EVENTS_PER_SLICE / config.rate_eps, 0.05, 600.0))
    tables = {name: choice_tables(spec) for name, spec in {a.archetype.name: a.archetype
                                                            for a in pop.accounts}.items()}
    dense: list[AccountStream] = []
    sparse: list[AccountStream] = []
    for a in pop.accounts:
        stream = AccountStream(a, start_s=start_s, slice_s=slice_s, duration_s=config.duration_s,
                               release_s=config.release_s, tables=tables[a.archetype.name])
        (sparse if a.rate * slice_s < _SPARSE_CALLS_PER_SLICE else dense).append(stream)
    few = _Sparse(sparse)
    renderer = Renderer(pop, start_ms=config.start_ms, id_prefix=config.fingerprint())
    delivery = np.random.default_rng(np.random.SeedSequence([config.seed, _DELIVERY]))
    late = np.empty(0, dtype=EVENT_DTYPE)  # delayed events not due yet
    steps = max(1, int(np.ceil(config.duration_s / slice_s)))
    per_epoch = max(1, round(_EPOCH_EVENTS / _EVENTS_PER_SLICE))

    def slice_end(step: int) -> float:
        return config.duration_s if step == steps - 1 else (step + 1) * slice_s

    for step in range(steps):
        last = step == steps - 1
        t_end = slice_end(step)
        if sparse and step % per_epoch == 0:
            few.load(slice_end(min(step + per_epoch, steps) - 1))
        parts = [s.take(t_end) for s in dense if s.next_t < t_end]
        if sparse:
            parts.append(few.take(t_end))
        batch = concat(parts)
        batch = batch[_time_order(batch)]
        if config.jitter_fraction > 0 and config.jitter_max_s > 0:
            batch, late = _delay(delivery, batch, late, config, t_end, last=last)
        rows = None
        if config.rfc3339_fraction > 0:
            rows = np.flatnonzero(delivery.random(batch.size) < config.rfc3339_fraction)
        yield renderer.render(batch, rows)


def _time_order(calls: np.ndarray) -> np.ndarray:
    """Order by event time, then account (stable: an account's own calls keep their order)."""
    return np.lexsort((calls["account"], calls["t"]))


class _Sparse:
    """The calls of accounts calling less than a few times per slice, taken an epoch of slices at a time
    (one ``take`` per account and epoch, not per slice) and handed out slice by slice."""

    def __init__(self, streams: list[AccountStream]) -> None:
        self._streams = streams
        self._calls = np.empty(0, dtype=EVENT_DTYPE)
        self._times = np.empty(0)

    def load(self, t_end: float) -> None:
        """Take every call before ``t_end`` (the end of an epoch) and merge them into time order."""
        calls = concat([self._calls, *(s.take(t_end) for s in self._streams if s.next_t < t_end)])
        self._calls = calls[_time_order(calls)]
        self._times = self._calls["t"].copy()

    def take(self, t_end: float) -> np.ndarray:
        """The loaded calls before ``t_end``."""
        cut = int(np.searchsorted(self._times, t_end, side="left"))
        taken = self._calls[:cut]
        self._calls, self._times = self._calls[cut:], self._times[cut:]
        return taken


def _delay(
    rng: np.random.Generator,
    batch: np.ndarray,
    late: np.ndarray,
    config: ScenarioConfig,
    t_end: float,
    *,
    last: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Events due before ``t_end`` in delivery order, and those still held back."""
    delayed = rng.random(batch.size) < config.jitter_fraction
    emit = batch["emit"]  # a view: the delay is written into the batch
    emit[delayed] += rng.uniform(0.0, config.jitter_max_s, int(delayed.sum()))
    merged = concat([late, batch])
    merged = merged[np.argsort(merged["emit"], kind="stable")]
    cut = merged.size if last else int(np.searchsorted(merged["emit"], t_end, side="left"))
    return merged[:cut], merged[cut:]


def run(
    config: ScenarioConfig, *, out: Path | None, bootstrap: str | None, topic: str, speedup: float | None
) -> int:
    """Generate the scenario into a JSONL file (``out``) or a Kafka topic (``bootstrap``)."""
    if out is not None and bootstrap is None:
        return write_jsonl(generate(config), out)
    if bootstrap is not None and out is None:
        return produce_kafka(generate(config), bootstrap, topic, rate_limit_eps=None, speedup=speedup)
    raise ValueError("give exactly one of out (a JSONL path) or bootstrap (Kafka servers)")

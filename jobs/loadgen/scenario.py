"""A seeded traffic scenario: which accounts exist, and the stream of their API calls.

``generate`` walks event time in slices: every account stream hands over its calls
for the slice, they are merged into time order, optionally delayed (out-of-order
delivery) and rendered. Memory is bounded by one slice plus a chunk per account.
The same config (seed included) always yields byte-identical events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict
from itertools import chain
from pathlib import Path
from types import MappingProxyType
from typing import Final

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jobs.loadgen.archetypes import ARCHETYPES, NEW_MODEL
from jobs.loadgen.behaviour import EVENT_DTYPE, AccountStream, concat
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
# 12 accounts of one or two companies whose accounts fire together on a cron.
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
    }
)
DEFAULT_START_MS: Final = 1_770_854_400_000  # 2026-02-12T00:00:00Z
_EVENTS_PER_SLICE = 20_000  # big enough to amortise numpy calls, small enough to stay cache-friendly
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
    def release_s(self) -> float:
        """When NEW_MODEL is released, in seconds of event time after ``start_ms``."""
        return self.duration_s * self.release_fraction

    @property
    def expected_events(self) -> int:
        return round(self.rate_eps * self.duration_s)

    def fingerprint(self) -> str:
        """Short hash of the whole config: the prefix of every event id."""
        canonical = orjson.dumps(self.model_dump(), option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(canonical, digest_size=4).hexdigest()


def population(config: ScenarioConfig) -> Population:
    return build_population(
        config.seed,
        config.mix,
        fleet_size=config.fleet_size,
        start_s=config.start_ms / 1000.0,
        duration_s=config.duration_s,
        rate_eps=config.rate_eps,
        archetypes=ARCHETYPES if config.vary_seed is None else varied_archetypes(config.vary_seed),
    )


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
    start_s = config.start_ms / 1000.0
    slice_s = float(np.clip(_EVENTS_PER_SLICE / config.rate_eps, 0.05, 600.0))
    streams = [
        AccountStream(a, start_s=start_s, slice_s=slice_s, duration_s=config.duration_s, release_s=config.release_s)
        for a in pop.accounts
    ]
    renderer = Renderer(pop, start_ms=config.start_ms, id_prefix=config.fingerprint())
    delivery = np.random.default_rng(np.random.SeedSequence([config.seed, _DELIVERY]))
    late = np.empty(0, dtype=EVENT_DTYPE)  # delayed events not due yet
    steps = max(1, int(np.ceil(config.duration_s / slice_s)))
    for step in range(steps):
        last = step == steps - 1
        t_end = config.duration_s if last else (step + 1) * slice_s
        parts = [s.take(t_end) for s in streams if s.next_t < t_end]
        batch = concat(parts)
        batch = batch[np.argsort(batch["t"], kind="stable")]
        if config.jitter_fraction > 0 and config.jitter_max_s > 0:
            batch, late = _delay(delivery, batch, late, config, t_end, last=last)
        rows = None
        if config.rfc3339_fraction > 0:
            rows = np.flatnonzero(delivery.random(batch.size) < config.rfc3339_fraction)
        yield renderer.render(batch, rows)


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

"""The evaluation's input: a labelled load-generator scenario written to EVENTS.jsonl and labels.json.

While writing, each account's first event time is recorded (time to detect counts from
it) and late delivery is measured, so the run reports how much out-of-order input the
pipeline actually had to handle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson

from jobs.eval import defaults
from jobs.loadgen.archetypes import ARCHETYPES
from jobs.loadgen.render import GeneratedEvent
from jobs.loadgen.scenario import DEFAULT_MIX, ScenarioConfig, generate_batches, write_labels
from jobs.loadgen.sink import event_time_ms
from jobs.loadgen.variation import mix_factors
from pipeline.kernels.layout import FRAME_MS

_MIN_FLEET: Final = 2  # a fleet of one is not a fleet


class OptionsError(ValueError):
    """The evaluation's options do not describe a scenario."""


def resolve_size(events: int | None, rate_eps: float | None, duration_s: float | None) -> tuple[float, float]:
    """(rate, duration) from any two of events, rate and duration; defaults fill the rest."""
    if events is not None and events <= 0:
        raise OptionsError("--events must be positive")
    rate = defaults.RATE_EPS if rate_eps is None else rate_eps
    duration = defaults.DURATION_S if duration_s is None else duration_s
    if rate <= 0 or duration <= 0:
        raise OptionsError("--rate and --duration must be positive")
    if events is None:
        return rate, duration
    if rate_eps is not None and duration_s is not None:
        raise OptionsError("give at most two of --events, --rate and --duration")
    if duration_s is not None:
        return events / duration, duration
    return rate, events / rate


def scaled_mix(scale: float, base: Mapping[str, int] = DEFAULT_MIX) -> dict[str, int]:
    """Account counts times ``scale``; every archetype keeps at least one account (fleets two)."""
    if scale <= 0:
        raise OptionsError("--mix-scale must be positive")
    mix = {}
    for name, count in base.items():
        floor = _MIN_FLEET if ARCHETYPES[name].fleet else 1
        mix[name] = max(floor, round(count * scale)) if count else 0
    return mix


def varied_mix(seed: int, mix: Mapping[str, int]) -> dict[str, int]:
    """``mix`` with every archetype's account count moved by its own factor (the generalisation check)."""
    factors = mix_factors(seed, mix)
    return {name: scaled_mix(factors[name], {name: count})[name] for name, count in mix.items()}


def parse_start(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise OptionsError(f"--start: expected an RFC 3339 time such as {defaults.START}, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


@dataclass(frozen=True)
class InputStats:
    """What was written, measured on the bytes that went into EVENTS.jsonl."""

    events: int
    accounts_labelled: int
    first_event_ms: dict[str, int]  # per account: earliest event time in the input
    output_by_minute: dict[str, dict[int, int]]  # per account: output tokens per event-time minute
    out_of_order: int  # events stamped earlier than an event written before them
    beyond_lateness: int  # ... by more than the allowed lateness: the pipeline should drop them as late
    max_lag_s: float  # largest such lag
    first_ts_ms: int | None
    last_ts_ms: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "accounts_labelled": self.accounts_labelled,
            "accounts_with_events": len(self.first_event_ms),
            "out_of_order": self.out_of_order,
            "beyond_allowed_lateness": self.beyond_lateness,
            "max_lag_s": round(self.max_lag_s, 3),
            "first_ts_ms": self.first_ts_ms,
            "last_ts_ms": self.last_ts_ms,
        }


class InputMeter:
    """Measures the events as they are written, a batch at a time (numpy: no Python work per event
    beyond reading two fields)."""

    def __init__(self, allowed_lateness_s: float) -> None:
        self._lateness_ms = allowed_lateness_s * 1000.0
        self._codes: dict[str, int] = {}
        self._first = np.empty(0, dtype=np.int64)
        self._output: dict[int, int] = {}  # code << 32 | minute -> completion + reasoning tokens
        self.events = self.out_of_order = self.beyond = self.max_lag_ms = 0
        self.newest = self.oldest = -1

    def add(self, batch: list[GeneratedEvent]) -> None:
        if not batch:
            return
        try:
            ts = np.array([e["ts"] for e in batch], dtype=np.int64)
        except (TypeError, ValueError):  # some RFC 3339 strings among them
            ts = np.array([event_time_ms(e) for e in batch], dtype=np.int64)
        codes = self._codes
        account = np.array([codes.setdefault(e["account_id"], len(codes)) for e in batch], dtype=np.int64)
        if len(codes) > self._first.size:
            grown = np.full(len(codes), np.iinfo(np.int64).max, dtype=np.int64)
            grown[: self._first.size] = self._first
            self._first = grown
        np.minimum.at(self._first, account, ts)
        self._add_output(batch, account, ts)
        # Newest event time written before each event: an event behind it was delivered late.
        before = np.maximum.accumulate(np.concatenate(([self.newest], ts[:-1])))
        lag = before - ts
        late = lag > 0
        self.out_of_order += int(late.sum())
        self.beyond += int((lag > self._lateness_ms).sum())
        self.max_lag_ms = max(self.max_lag_ms, int(lag.max()))
        self.newest = max(self.newest, int(ts.max()))
        low = int(ts.min())
        self.oldest = low if self.oldest < 0 else min(self.oldest, low)
        self.events += len(batch)

    def _add_output(self, batch: list[GeneratedEvent], account: np.ndarray, ts: np.ndarray) -> None:
        # What each account took per minute: the share harvested before its first alert is read off it.
        tokens = np.array([e.get("completion_tokens", 0) + e.get("reasoning_tokens", 0) for e in batch],
                          dtype=np.int64)
        keys, where = np.unique((account << 32) | (ts // FRAME_MS), return_inverse=True)
        sums = np.zeros(keys.size, dtype=np.int64)
        np.add.at(sums, where, tokens)
        output = self._output
        for key, total in zip(keys.tolist(), sums.tolist(), strict=True):
            output[key] = output.get(key, 0) + int(total)

    def first_event_ms(self) -> dict[str, int]:
        return {account: int(self._first[code]) for account, code in self._codes.items()}

    def output_by_minute(self) -> dict[str, dict[int, int]]:
        names = {code: account for account, code in self._codes.items()}
        result: dict[str, dict[int, int]] = {account: {} for account in self._codes}
        for key, total in self._output.items():
            result[names[key >> 32]][key & 0xFFFFFFFF] = total
        return result


def write_scenario(
    config: ScenarioConfig,
    events_path: Path,
    labels_path: Path,
    *,
    allowed_lateness_s: float,
    progress: Callable[[int, int], None] | None = None,
    progress_every_s: float = 5.0,
) -> InputStats:
    """Write the events and labels; ``progress(events, newest_ts_ms)`` every few seconds."""
    labelled = write_labels(config, labels_path)
    events_path.parent.mkdir(parents=True, exist_ok=True)
    meter = InputMeter(allowed_lateness_s)
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    next_report = time.monotonic() + progress_every_s
    with events_path.open("wb", buffering=1 << 20) as out:
        for batch in generate_batches(config):
            out.write(b"".join([dumps(e, option=option) for e in batch]))
            meter.add(batch)
            if progress is not None and time.monotonic() >= next_report:
                progress(meter.events, meter.newest)
                next_report = time.monotonic() + progress_every_s
    if progress is not None:
        progress(meter.events, meter.newest)
    return InputStats(
        events=meter.events,
        accounts_labelled=labelled,
        first_event_ms=meter.first_event_ms(),
        output_by_minute=meter.output_by_minute(),
        out_of_order=meter.out_of_order,
        beyond_lateness=meter.beyond,
        max_lag_s=meter.max_lag_ms / 1000.0,
        first_ts_ms=meter.oldest if meter.events else None,
        last_ts_ms=meter.newest if meter.events else None,
    )

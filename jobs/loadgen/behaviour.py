"""Per-account event streams, drawn in vectorised chunks into one structured array.

A chunk holds the account's next few hundred or thousand calls as integer/float
columns (strings are indices into the population's tables). The scenario takes from
every stream whatever falls into the current time slice, merges and renders it.
"""

from __future__ import annotations

import numpy as np

from jobs.loadgen.archetypes import EMBED, EMBED_SMALL, NEW, REASONING_MODELS, Archetype, Choice, Pivot
from jobs.loadgen.population import Account
from jobs.loadgen.prompts import fresh, pick
from jobs.loadgen.timing import Arrivals

EVENT_DTYPE = np.dtype(
    [
        ("t", "f8"),  # event time, seconds since the scenario start
        ("emit", "f8"),  # when the gateway delivers it (t, or later for jittered events)
        ("account", "i4"),
        ("key", "i4"),
        ("ip", "i4"),
        ("agent", "i4"),
        ("endpoint", "i1"),
        ("model", "i1"),
        ("status", "i2"),
        ("latency", "i8"),
        ("prompt_tokens", "i8"),
        ("completion_tokens", "i8"),
        ("reasoning_tokens", "i8"),
        ("phash", "u8"),
        ("shash", "u8"),
        ("topic", "i2"),
        ("reason", "?"),
        ("temperature", "f8"),  # NaN: not sent
        ("top_p", "f8"),  # NaN: not sent
        ("n", "i4"),
        ("max_tokens", "i8"),  # 0: not sent
        ("logprobs", "?"),
        ("top_logprobs", "i1"),  # -1: not sent
        ("logit_bias", "i4"),
        ("stream", "?"),
    ]
)

# Time to first token and per-token time (ms) of each model in MODELS.
_FIRST_TOKEN_MS = np.array([450.0, 200.0, 900.0, 40.0, 600.0])
_PER_TOKEN_MS = np.array([14.0, 5.0, 11.0, 0.0, 9.0])
_MAX_COMPLETION = 32_768
_MAX_REASONING = 65_536
_MIN_CHUNK, _MAX_CHUNK = 32, 16_384
_QUIET_MIN_CHUNK = 64  # an absolute-rate account (Archetype.calls_per_min): one draw covers most of its calls


def concat(parts: list[np.ndarray]) -> np.ndarray:
    """Stack EVENT_DTYPE arrays (np.concatenate re-derives the structured dtype on every call)."""
    out = np.empty(sum(p.size for p in parts), dtype=EVENT_DTYPE)
    at = 0
    for part in parts:
        out[at : at + part.size] = part
        at += part.size
    return out


class _Table:
    """A ``Choice`` as value and cumulative-weight arrays; ``None`` becomes ``missing``."""

    __slots__ = ("cum", "values")

    def __init__(self, choice: Choice, missing: float, dtype: type) -> None:
        self.values: np.ndarray = np.array([missing if v is None else v for v, _ in choice], dtype=dtype)
        self.cum = np.cumsum([w for _, w in choice], dtype=np.float64)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.values.size == 1:
            return np.full(n, self.values[0], dtype=self.values.dtype)
        return self.values[pick(rng, self.cum, n)]


def choice_tables(spec: Archetype) -> dict[str, _Table]:
    """An archetype's choices as lookup tables (the same for all its accounts)."""
    s, c = spec.sampling, spec.content
    return {
        "endpoint": _Table(c.endpoints, 0, np.int8),
        "model": _Table(c.models, 0, np.int8),
        "status": _Table(spec.status, 200, np.int16),
        "temperature": _Table(s.temperature, np.nan, np.float64),
        "top_p": _Table(s.top_p, np.nan, np.float64),
        "n": _Table(s.n, 1, np.int32),
        "max_tokens": _Table(s.max_tokens, 0, np.int64),
        "top_logprobs": _Table(s.top_logprobs, -1, np.int8),
    }


class AccountStream:
    """The calls of one account in time order, handed out slice by slice."""

    __slots__ = ("_account", "_address", "_arrivals", "_buffer", "_chunk", "_cursor", "_release_s", "_rng",
                 "_sweep_at", "_tables", "_times", "next_t")  # fmt: skip

    def __init__(self, account: Account, *, start_s: float, slice_s: float, duration_s: float,
                 release_s: float, tables: dict[str, _Table] | None = None) -> None:
        """``release_s``: when NEW_MODEL is released, in seconds since the start (no call uses it before);
        ``tables``: its archetype's ``choice_tables``, shared by the streams of its accounts."""
        spec = account.archetype
        self._account = account
        self._release_s = release_s
        self._rng = np.random.default_rng(account.seed)
        self._arrivals = Arrivals(self._rng, account.clock(start_s), account.rate, spec.timing,
                                  batch_len=account.batch_len)
        # Chunks of several slices' worth (numpy call overhead per event stays small) but
        # not much more than the account will send in the whole scenario.
        expected = account.rate * min(slice_s * 8, duration_s * 1.2)
        least = _QUIET_MIN_CHUNK if spec.calls_per_min is not None else _MIN_CHUNK
        self._chunk = int(np.clip(expected, least, _MAX_CHUNK))
        self._cursor = 0  # sweeps start with the cycle, so runs end where the pauses are
        self._sweep_at = 0
        self._address = int(account.addresses[0])
        self._tables = choice_tables(spec) if tables is None else tables
        # The process starts up to a cycle before the scenario: drop what fell before it.
        self._refill()
        while self._times[-1] < 0:
            self._refill()
        self._advance(int(np.searchsorted(self._times, 0.0)))

    def take(self, t_end: float) -> np.ndarray:
        """Every call with event time before ``t_end`` not handed out yet."""
        parts = []
        while True:
            cut = int(np.searchsorted(self._times, t_end, side="left"))
            if cut < self._times.size:
                parts.append(self._buffer[:cut])
                self._advance(cut)
                break
            parts.append(self._buffer)
            self._refill()
        return parts[0] if len(parts) == 1 else concat(parts)

    def _refill(self) -> None:
        self._buffer = self._draw(self._chunk)
        # A contiguous copy: searchsorted on a structured field would copy it on every call.
        self._times = self._buffer["t"].copy()
        self.next_t = float(self._times[0])

    def _advance(self, cut: int) -> None:
        self._buffer = self._buffer[cut:]
        self._times = self._times[cut:]
        self.next_t = float(self._times[0])

    def _draw(self, n: int) -> np.ndarray:
        a, rng, tables = self._account, self._rng, self._tables
        spec = a.archetype
        sampling = spec.sampling
        out = np.empty(n, dtype=EVENT_DTYPE)
        t = self._arrivals.next(n)
        out["t"] = t
        out["emit"] = t
        out["account"] = a.index

        # What is asked: repeats come from the pool, the rest is new text.
        pooled = np.ones(n, dtype=bool) if a.pool.sweep else rng.random(n) < spec.prompts.repeat_share
        which, self._cursor = a.pool.take(rng, int(pooled.sum()), self._cursor)
        new = fresh(rng, a.source, n - which.size)
        for column, attr in (("phash", "phash"), ("shash", "shash"), ("topic", "topic"), ("reason", "reason"),
                             ("prompt_tokens", "tokens")):  # fmt: skip
            values = out[column]
            values[pooled] = getattr(a.pool.prompts, attr)[which]
            values[~pooled] = getattr(new, attr)

        endpoint = tables["endpoint"].draw(rng, n)
        model = tables["model"].draw(rng, n)
        embed = endpoint == EMBED
        model[embed] = EMBED_SMALL
        if spec.pivot is not None:
            self._pivot(spec.pivot, t, model, ~embed)
        reason = out["reason"]
        reason &= ~embed
        status = tables["status"].draw(rng, n)

        # How it samples.
        if sampling.temperature_sweep:
            grid = np.asarray(sampling.temperature_sweep)
            temperature = grid[(self._sweep_at + np.arange(n)) % grid.size]
            self._sweep_at = (self._sweep_at + n) % grid.size
        else:
            temperature = tables["temperature"].draw(rng, n)
        top_p = tables["top_p"].draw(rng, n)
        choices = tables["n"].draw(rng, n)
        max_tokens = tables["max_tokens"].draw(rng, n)
        logprobs = rng.random(n) < sampling.logprobs
        top_logprobs = np.where(logprobs, tables["top_logprobs"].draw(rng, n), -1)
        low, high = sampling.logit_bias_range
        logit_bias = np.where(rng.random(n) < sampling.logit_bias, rng.integers(low, high + 1, n), 0)
        stream = rng.random(n) < sampling.stream
        # Embedding calls take none of the generation parameters.
        temperature[embed] = np.nan
        top_p[embed] = np.nan
        choices[embed] = 1
        max_tokens[embed] = 0
        logprobs &= ~embed
        top_logprobs[embed] = -1
        logit_bias[embed] = 0
        stream &= ~embed

        # How much it costs: visible chain of thought lengthens completions, the reasoning
        # model adds hidden reasoning tokens (many more when reasoning is asked for).
        content = spec.content
        completion = a.completion_median * rng.lognormal(0.0, content.completion_tokens[1], n)
        completion[reason] *= content.cot_boost
        capped = max_tokens > 0
        completion[capped] = np.minimum(completion[capped], max_tokens[capped])
        completion = np.clip(np.rint(completion), 1, _MAX_COMPLETION) * choices
        reasoning = a.reasoning_median * rng.lognormal(0.0, content.reasoning_tokens[1], n)
        reasoning[~reason] /= 6.0
        reasoning = np.where(np.isin(model, REASONING_MODELS), np.clip(np.rint(reasoning), 1, _MAX_REASONING), 0)
        prompt_tokens = out["prompt_tokens"]
        failed = status != 200
        completion[failed | embed] = 0
        reasoning[failed] = 0
        prompt_tokens[(status == 429) | (status == 401)] = 0  # rejected before the prompt is read

        generated = completion + reasoning
        latency = _FIRST_TOKEN_MS[model] + generated * _PER_TOKEN_MS[model] + prompt_tokens * 0.02
        latency *= rng.lognormal(0.0, 0.3, n)
        error_median = np.where(status[failed] >= 500, 800.0, 15.0)
        latency[failed] = error_median * rng.lognormal(0.0, 0.8, error_median.size)
        latency[status == 408] = rng.uniform(30_000, 60_000, int((status == 408).sum()))

        out["endpoint"] = endpoint
        out["model"] = model
        out["status"] = status
        out["latency"] = np.rint(latency)
        out["completion_tokens"] = completion
        out["reasoning_tokens"] = reasoning
        out["temperature"] = temperature
        out["top_p"] = top_p
        out["n"] = choices
        out["max_tokens"] = max_tokens
        out["logprobs"] = logprobs
        out["top_logprobs"] = top_logprobs
        out["logit_bias"] = logit_bias
        out["stream"] = stream

        # Where it comes from.
        out["key"] = a.keys[pick(rng, a.key_cum, n)]
        out["agent"] = a.agents[pick(rng, a.agent_cum, n)]
        out["ip"] = self._addresses(n)
        return out

    def _pivot(self, pivot: Pivot, t: np.ndarray, model: np.ndarray, generation: np.ndarray) -> None:
        """Move generation calls to NEW_MODEL: a trickle of trials after its release, the account's share once moved."""
        a = self._account
        moved_at = self._release_s + a.pivot_lag_s
        p = np.where(t >= moved_at, a.pivot_share, np.where(t >= self._release_s, pivot.trial, 0.0))
        model[generation & (self._rng.random(t.size) < p)] = NEW

    def _addresses(self, n: int) -> np.ndarray:
        a, rng = self._account, self._rng
        switch = a.archetype.network.switch
        if switch >= 1.0:
            return a.addresses[pick(rng, a.address_cum, n)]
        # Sticky: keep the current address until a switch (a new DHCP lease, a new VPN exit).
        segment = np.cumsum(rng.random(n) < switch)
        chosen = a.addresses[pick(rng, a.address_cum, int(segment[-1]) + 1)]
        chosen[0] = self._address
        addresses = chosen[segment]
        self._address = int(addresses[-1])
        return addresses

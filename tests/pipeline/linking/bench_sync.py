"""Micro-benchmark of the timing evidence at scale: ``python -m tests.pipeline.linking.bench_sync [--accounts N]``.

Not a test (no ``test_`` prefix): it prints, per scenario, the cost of one boundary over N active
accounts (``sync.find_groups``, median of ``--repeat`` runs), the tracker's ingestion of one minute
of frames, the ring's memory and checkpoint, and how many accounts outside the planted fleets were
grouped (false links). Scenarios:

* ``mixed``: independent accounts on one daily curve (0.3–50 calls a minute), crons every 5 and 15
  minutes, hourly jobs, and 20 planted fleets of 25 (round-robin and waves);
* ``one-fleet``: a quarter of the accounts one round-robin fleet (its buckets are big: resolved
  around their centre), the rest independent.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import orjson

from pipeline.linking.config import LinkingConfig, load_linking_config
from pipeline.linking.messages import AccountUpdates
from pipeline.linking.sync import find_groups
from pipeline.linking.sync_tracker import SyncTracker
from tests.pipeline.linking.sync_data import (
    START_MINUTE,
    cron_crowd,
    hourly_jobs,
    independent,
    round_robin_fleet,
    waves_fleet,
)


def mixed(rng: np.random.Generator, n: int, minutes: int) -> tuple[np.ndarray, np.ndarray]:
    fleets = [round_robin_fleet(rng, 25, minutes, 4.0) if i % 2 else waves_fleet(rng, 25, minutes, 10.0)
              for i in range(20)]
    crowd = [cron_crowd(rng, n // 20, minutes, 5), cron_crowd(rng, n // 20, minutes, 15),
             hourly_jobs(rng, n // 20, minutes)]
    rest = n - 500 - 3 * (n // 20)
    counts = np.vstack([*fleets, *crowd, independent(rng, rest, minutes)])
    labels = np.r_[np.repeat(np.arange(20), 25), np.full(n - 500, -1)]
    return counts, labels


def one_fleet(rng: np.random.Generator, n: int, minutes: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.vstack([round_robin_fleet(rng, n // 4, minutes, 4.0), independent(rng, n - n // 4, minutes)])
    return counts, np.r_[np.zeros(n // 4, int), np.full(n - n // 4, -1)]


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times)), out


def ingest(config: LinkingConfig, counts: np.ndarray, names: list[str]) -> tuple[SyncTracker, list[float]]:
    """Feed the tracker one message per minute (frames only); seconds per message, boundaries included."""
    tracker = SyncTracker(config, {})
    spent = []
    index = np.arange(len(names))
    for t in range(counts.shape[1]):
        calls = counts[:, t]
        rows = index[calls > 0]
        update = AccountUpdates("bench", names, [], [], [], [], [], [], rows.tolist(),
                                [START_MINUTE + t] * len(rows), calls[rows].tolist())
        started = time.perf_counter()
        tracker.handle(update)
        spent.append(time.perf_counter() - started)
    return tracker, spent


def run(name: str, counts: np.ndarray, labels: np.ndarray, config: LinkingConfig, repeat: int) -> None:
    n = len(counts)
    planted = int((labels >= 0).sum())
    for sync in config.sync.scales():  # each window a boundary compares (the early one every early step)
        span = sync.repeat_minutes + sync.window_minutes
        window = counts[:, -span:].astype(np.float64)
        tracemalloc.start()
        seconds, found = timed(lambda: find_groups(window, sync), repeat)  # noqa: B023 (called at once)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        groups = found.groups  # type: ignore[attr-defined]
        st = found.stats  # type: ignore[attr-defined]
        outside = sum(int((labels[g.rows] < 0).sum()) for g in groups)
        found_planted = sum(int((labels[g.rows] >= 0).sum()) for g in groups)
        mixed_groups = sum(len(set(labels[g.rows].tolist())) > 1 for g in groups)
        print(f"{name}: {n:,} accounts, one boundary over the {sync.window_minutes}-minute window "
              f"(+{sync.repeat_minutes} before, every {sync.step_minutes} minutes): {seconds * 1000:.0f} ms "
              f"(median of {repeat}); peak temporary memory {peak / 2**20:.1f} MiB")
        print(f"  compared {st.eligible:,} (left out as clockwork: {st.periodic:,} periodic, {st.repeating:,} "
              f"repeating, {st.stepped:,} one step); "
              f"{st.candidates:,} candidate pairs ({st.candidates / max(1, st.eligible * (st.eligible - 1) / 2):.2e} "
              f"of all pairs), {st.big_buckets:,} big buckets, {st.edges:,} verified edges, {len(groups)} groups")
        print(f"  planted fleet members grouped: {found_planted:,} of {planted:,}; accounts outside a fleet grouped: "
              f"{outside:,} of {n - planted:,} (groups mixing fleets or outsiders: {mixed_groups})")
    names = [f"acct-{i:06d}" for i in range(n)]
    tracker, per_minute = ingest(config, counts, names)
    quiet = [s for s, t in zip(per_minute, range(counts.shape[1]), strict=True)
             if (START_MINUTE + t - tracker.settle) % tracker.step]
    started = time.perf_counter()
    section = tracker.ring.section()
    encoded = orjson.dumps(section)
    encode_s = time.perf_counter() - started
    ring = tracker.ring.nbytes()
    print(f"  tracker: {np.median(quiet) * 1000:.1f} ms per minute of {int((counts > 0).sum(0).mean()):,} frames "
          f"(median), {max(per_minute) * 1000:.0f} ms with a boundary (max); ring {ring / 2**20:.1f} MiB "
          f"for {len(tracker.ring):,} accounts ({ring / max(1, len(tracker.ring)):.0f} B each), "
          f"checkpoint section {len(encoded) / 2**20:.1f} MiB built and encoded in {encode_s * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    config = load_linking_config()
    minutes = config.sync.repeat_minutes + config.sync.window_minutes + config.sync.settle_minutes + 1
    for name, build in (("mixed", mixed), ("one-fleet", one_fleet)):
        counts, labels = build(np.random.default_rng(args.seed), args.accounts, minutes)
        run(name, counts, labels, config, args.repeat)


if __name__ == "__main__":
    main()

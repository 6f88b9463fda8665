"""The bench's outputs: results.json (the contract in BENCH_RESULTS.md), details.json, a table, a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Measurements in the contract's order, with the unit of each row of the table.
MEASUREMENTS = ("kafka_consume_raw", "decode_json", "kernel_numba", "kernel_reference", "faust_naive",
                "pipeline_json", "pipeline_batched")


def _number(value: float) -> float:
    return float(f"{value:.4g}")  # 4 significant digits: more would be noise on a shared machine


def rate(events: int, seconds: float, cpu_seconds: float | None = None, **extra: float) -> dict[str, float]:
    """A result entry; ``events_per_s_per_core`` only where the measurement used more than one core."""
    out = {"events_per_s": _number(events / seconds)}
    out.update({k: _number(v) for k, v in extra.items()})
    if cpu_seconds is not None and cpu_seconds > seconds:
        out["events_per_s_per_core"] = _number(events / cpu_seconds)
    return out


def backtest_entry(account_minutes: int, seconds: float) -> dict[str, float]:
    """The ``backtest`` entry: a whole ``distillwatch backtest`` over ``account_minutes`` stored rows."""
    return {"account_minutes": account_minutes, "seconds": _number(seconds),
            "account_minutes_per_s": _number(account_minutes / seconds)}


def investigate_entry(events: int, seconds: float) -> dict[str, float]:
    """The ``investigate`` entry: ``distillwatch investigate`` of one account with ``events`` stored calls."""
    return {"events": events, "seconds": _number(seconds)}


def limits_entry(ceilings: dict[str, Any]) -> dict[str, dict[str, float]]:
    """results.json's top-level ``limits`` (an addition to the contract): each ceiling's events/s.

    ``*_consume_decode[_detect]_{1,2}p``: the hot path without ClickHouse and linking, in 1 or
    2 processes (summed); ``chdb_insert``: the worker's rows inserted alone, events per insert-second.
    """
    out = {name: {"events_per_s": c["events_per_s"], "cores_used": c["cores_used"],
                  "events_per_cpu_s": c["events_per_cpu_s"]}
           for name, c in ceilings.items() if name != "chdb_insert"}
    ins = ceilings["chdb_insert"]
    out["chdb_insert"] = {"events_per_s": ins["events_per_insert_s"],
                          "gil_free_fraction": round(ins["gil_probe"]["gil_free_fraction"], 2),
                          "overlap_hidden_fraction": round(ins["hidden_fraction"], 2)}
    return out


def write_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def table(results: dict[str, Any]) -> str:
    rows = [("measurement", "events/s", "per core", "p50 s", "p99 s")]
    for name in MEASUREMENTS:
        r = results["results"][name]
        rows.append((name, f"{r['events_per_s']:,.0f}",
                     f"{r['events_per_s_per_core']:,.0f}" if "events_per_s_per_core" in r else "",
                     f"{r['latency_p50_s']:.3f}" if "latency_p50_s" in r else "",
                     f"{r['latency_p99_s']:.3f}" if "latency_p99_s" in r else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                    strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    mem = results["memory"]
    lines.append("")
    for name, c in results.get("limits", {}).items():
        extra = (f", cores used {c['cores_used']:.2f}, {c['events_per_cpu_s']:,.0f} per CPU-second"
                 if "cores_used" in c
                 else f" of insert time, GIL free during inserts {c['gil_free_fraction']:.2f}, "
                      f"decode+detect hidden when overlapped {c['overlap_hidden_fraction']:.2f}")
        lines.append(f"limit {name}: {c['events_per_s']:,.0f} events/s{extra}")
    if "backtest" in results["results"]:
        b = results["results"]["backtest"]
        lines.append(f"backtest: {b['account_minutes']:,} account-minutes in {b['seconds']:.2f} s "
                     f"({b['account_minutes_per_s']:,.0f}/s, ClickHouse read included)")
    if "investigate" in results["results"]:
        inv = results["results"]["investigate"]
        lines.append(f"investigate: one account with {inv['events']:,} events in {inv['seconds']:.2f} s "
                     "(rollups and key ranges, ClickHouse read included)")
    lines.append(f"memory per active account: {mem['bytes_per_account_100k']:,.0f} B at 100k accounts, "
                 f"{mem['bytes_per_account_1m']:,.0f} B at 1M")
    lines.append(f"{results['events']:,} events over {results['accounts']:,} accounts, "
                 f"{results['machine']['cpus']} CPUs, Python {results['machine']['python']}, "
                 f"broker {results['machine']['broker']}")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = list(MEASUREMENTS)
    values = [results["results"][n]["events_per_s"] for n in names]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    bars = ax.barh(names[::-1], values[::-1], color=["#4c72b0" if n.startswith("pipeline") else "#8c8c8c"
                                                     for n in names[::-1]])
    ax.set_xscale("log")
    ax.set_xlabel("events per second (log scale)")
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values[::-1]], padding=3, fontsize=8)
    ax.set_title(f"distillwatch bench: {results['events']:,} events, {results['accounts']:,} accounts, "
                 f"{results['machine']['cpus']} CPUs ({results['created']})", fontsize=9)
    ax.set_xlim(right=max(values) * 8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)

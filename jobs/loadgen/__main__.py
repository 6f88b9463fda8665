"""``python -m jobs.loadgen``: a labelled scenario as JSONL, with per-archetype account counts.

``distillwatch loadgen`` generates the default mix at the demo's rate; this takes the eval's defaults (rate,
duration, start), ``--mix-scale`` (as ``eval``) and ``--accounts NAME=COUNT`` to add or set one archetype's
count, e.g. the reported low-and-slow campaign (not in the default mix)::

    python -m jobs.loadgen --out big/EVENTS.jsonl --labels big/labels.json --rate 150 --duration 21600 \\
        --start 2026-02-12T06:00:00Z --mix-scale 2 --accounts low_and_slow_fleet=20000
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from jobs.eval import defaults
from jobs.eval.scenario import parse_start, scaled_mix
from jobs.loadgen.scenario import ScenarioConfig, run, with_accounts, write_labels


@click.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="write the events here (JSONL)")
@click.option("--labels", type=click.Path(path_type=Path), help="also write ground-truth labels (JSON)")
@click.option("--rate", default=defaults.RATE_EPS, show_default=True, help="mean events per event-time second")
@click.option("--duration", default=defaults.DURATION_S, show_default=True, help="event-time seconds")
@click.option("--start", default=defaults.START, show_default=True, help="event time of the first event")
@click.option("--seed", default=defaults.SEED, show_default=True)
@click.option("--mix-scale", default=1.0, show_default=True, help="multiply every archetype's account count")
@click.option("--accounts", multiple=True, metavar="NAME=COUNT", help="add or set one archetype's account "
              "count (after --mix-scale; repeatable)")
def main(out: Path, labels: Path | None, rate: float, duration: float, start: str, seed: int, mix_scale: float,
         accounts: tuple[str, ...]) -> None:
    """Generate a labelled scenario (deterministic under --seed)."""
    try:
        config = ScenarioConfig(seed=seed, start_ms=parse_start(start), duration_s=duration, rate_eps=rate,
                                mix=with_accounts(scaled_mix(mix_scale), accounts))
        started = time.monotonic()
        if labels:
            click.echo(f"{write_labels(config, labels):,} accounts -> {labels}", err=True)
        n = run(config, out=out, bootstrap=None, topic="", speedup=None)
    except ValueError as exc:  # OptionsError and pydantic's ValidationError too
        raise click.ClickException(str(exc)) from None
    click.echo(f"{n:,} events -> {out} in {time.monotonic() - started:.1f}s", err=True)


if __name__ == "__main__":
    main()

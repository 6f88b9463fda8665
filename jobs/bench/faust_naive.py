"""The ``faust_naive`` baseline: what most Faust users would write for this job.

One event at a time through a Faust agent: ``json.loads``, then per-account
counters in a Faust table (changelogged to Kafka, as Faust tables are). Run as a
child process by the bench:

    python -m jobs.bench.faust_naive BOOTSTRAP TOPIC PARTITIONS DATA_DIR

It prints one JSON line per half second, ``{"t": wall clock, "n": events handled}``,
to stdout until it is stopped; the bench turns those lines into a rate.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import faust


def build_app(bootstrap: str, topic: str, partitions: int, data_dir: str) -> faust.App:
    app = faust.App(
        f"dw-bench-naive-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=data_dir,
        topic_partitions=partitions,
        web_enabled=False,
        # As the project's worker does on Tansu: short rebalance waits.
        broker_rebalance_timeout=4,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
    )
    events = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                       partitions=partitions)
    calls = app.Table("calls", default=int, partitions=partitions)
    tokens = app.Table("tokens", default=int, partitions=partitions)
    handled = [0]

    @app.agent(events)
    async def count_calls(stream: faust.StreamT) -> None:
        async for value in stream:
            event = json.loads(value)
            account = event["account_id"]
            calls[account] += 1
            tokens[account] += event["prompt_tokens"] + event["completion_tokens"]
            handled[0] += 1

    @app.timer(0.5)
    async def report() -> None:
        print(json.dumps({"t": time.time(), "n": handled[0]}), flush=True)

    return app


def main(argv: list[str]) -> None:
    bootstrap, topic, partitions, data_dir = argv
    app = build_app(bootstrap, topic, int(partitions), data_dir)
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main(sys.argv[1:])

"""``distillwatch bench``: throughput, latency and memory of the pipeline beside its baselines.

The output contract is /work/shared/BENCH_RESULTS.md (``bench/results.json``);
``bench/details.json`` adds how each figure was obtained (counts, durations, CPU,
per-stage worker timings) and ``bench/results.png`` plots the rates. The entry
point is ``jobs.bench.runner.run_bench``; the other modules are its parts and the
child processes it starts (kept import-light: nothing is imported here).
"""

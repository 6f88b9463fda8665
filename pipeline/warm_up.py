"""Load, or on the first run compile, every Numba kernel the worker runs, before any traffic.

Numba compiles a kernel when it is first called and caches the machine code beside the
module (``__pycache__/*.nbc``); a fresh install pays about 30-50 s once. ``make venv`` runs
``python -m pipeline.warm_up`` so that happens at install time, and the worker calls
``warm_up_kernels`` at start, so its first batch is never the slow one.
"""

from __future__ import annotations

import logging
import time

from pipeline.decode.dispatch import decode_any_batch
from pipeline.decode.fast_json import warm_up as warm_up_decoder
from pipeline.detect.detector import Detector
from pipeline.settings import load_settings

log = logging.getLogger(__name__)

# Two valid calls a minute apart from one account and key, so frames open, roll and close.
_EVENTS = tuple(
    (b'{"event_id":"warm-%d","ts":%d,"account_id":"warm","api_key_id":"k","client_ip":"192.0.2.1",'
     b'"asn":64500,"endpoint":"/v1/chat/completions","model":"m","status":200,"prompt_tokens":10,'
     b'"completion_tokens":20,"prompt_hash":"00000000000000%02x","prompt_simhash":"0f0f0f0f0f0f0f0f",'
     b'"temperature":0.5,"logprobs":true,"top_logprobs":5}') % (i, 1_770_888_600_000 + 60_000 * i, i)
    for i in range(2)
)


def warm_up_kernels() -> float:
    """Decode and detect a tiny batch (frames closed); returns the seconds it took."""
    started = time.perf_counter()
    warm_up_decoder()
    n = len(_EVENTS)
    batch = decode_any_batch(list(_EVENTS), [b"warm"] * n, [0] * n, list(range(n)),
                             max_message_bytes=65_536, max_ts_ms=2**62)
    if batch.rejects:  # the warm-up events are ours: a reject here is a bug, not bad input
        raise RuntimeError(f"warm-up event rejected: {batch.rejects[0].detail}")
    Detector(load_settings(), n_partitions=1).process(batch, force_close=True)
    return time.perf_counter() - started


def main() -> None:
    print("distillwatch: loading Numba kernels (compiled and cached on the first run only)…", flush=True)
    print(f"distillwatch: kernels ready in {warm_up_kernels():.1f}s", flush=True)


if __name__ == "__main__":
    main()

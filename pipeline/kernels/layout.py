"""Shared layout of the signature kernels' arrays: counter and flag indices, sizes.

Plain constants only (no Numba, no NumPy state) so that the kernels, their plain
Python reference, the decoder and the sinks all agree on one definition.
"""

from __future__ import annotations

# Counters kept per (account, minute frame), in this order.
CALLS = 0
PROMPT_TOKENS = 1
COMPLETION_TOKENS = 2
REASONING_TOKENS = 3
REASONING_CALLS = 4  # elicits_reasoning set by the gateway's classifier
LOGPROB_CALLS = 5  # logprobs requested or top_logprobs > 0
LOGIT_BIAS_CALLS = 6  # logit_bias_count > 0
MULTI_N_CALLS = 7  # n > 1
ERROR_CALLS = 8  # status >= 400
RATE_LIMITED_CALLS = 9  # status == 429
HASHED_CALLS = 10  # calls that carried a prompt hash (denominator of prompt diversity)
DEEP_LOGPROB_CALLS = 11  # top_logprobs >= DEEP_TOP_LOGPROBS: reading out the distribution
N_COUNTERS = 12

COUNTER_NAMES: tuple[str, ...] = (
    "calls",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "reasoning_calls",
    "logprob_calls",
    "logit_bias_calls",
    "multi_n_calls",
    "error_calls",
    "rate_limited_calls",
    "hashed_calls",
    "deep_logprob_calls",
)

# Bits of the per-event flags byte.
FLAG_REASONING = 1
FLAG_LOGPROBS = 2
FLAG_LOGIT_BIAS = 4
FLAG_MULTI_N = 8
FLAG_STREAM = 16
FLAG_DEEP_LOGPROBS = 32
# Calibration needs the top few alternatives; distribution theft asks for many.
DEEP_TOP_LOGPROBS = 10

# HyperLogLog sketch sizes (registers) per frame: 2**6 for prompts, 2**5 for IPs.
# Small on purpose: one frame is one account-minute; wider windows merge frames.
HLL_PROMPT_BITS = 6
HLL_IP_BITS = 5
HLL_PROMPT_REGISTERS = 1 << HLL_PROMPT_BITS
HLL_IP_REGISTERS = 1 << HLL_IP_BITS

FRAME_MS = 60_000
NO_FRAME = -1  # frame_minute value of an empty ring slot
NO_TIME = -(2**62)  # partition max event time before its first event


def ring_size(allowed_lateness_ms: int) -> int:
    """Frames kept per account: enough that no open frame is ever overwritten.

    An event is accepted while its frame's end is later than the watermark
    (max event time minus lateness), so frames up to lateness/60 s + 1 minutes old
    stay open; one more slot holds the newest minute.
    """
    return -(-allowed_lateness_ms // FRAME_MS) + 2

"""Shared layout of the signature kernels' arrays: counter and flag indices, sizes.

Plain constants only (no Numba, no NumPy state) so that the kernels, their plain
Python reference, the decoder, scoring and the sinks agree on one definition.
"""

from __future__ import annotations

# --- per-event flags (uint16: frames.EVENT_DTYPES) ---------------------------------
FLAG_REASONING = 1
FLAG_LOGPROBS = 2
FLAG_LOGIT_BIAS = 4
FLAG_MULTI_N = 8
FLAG_STREAM = 16
FLAG_DEEP_LOGPROBS = 32
FLAG_WIDE_LOGIT_BIAS = 64  # logit_bias_count >= WIDE_LOGIT_BIAS
FLAG_TINY_MAX_TOKENS = 128  # 0 < max_tokens <= TINY_MAX_TOKENS
FLAG_CLIENT_MISMATCH = 256  # browser user agent, non-browser TLS / HTTP/2 handshake (decode.client_claims)
FLAG_NEW_MODEL = 512  # the call's model is newly released (decode.model_release, set by the detector)
# Calibration needs the top few alternatives; distribution theft asks for many.
DEEP_TOP_LOGPROBS = 10
# A classifier biases its few label tokens (2-20); parameter stealing (Carlini et al. 2024)
# biases hundreds of token ids per call to read logits of tokens outside the top-k.
WIDE_LOGIT_BIAS = 50
# One or two tokens of output: a probe of the next-token distribution, not an answer.
TINY_MAX_TOKENS = 2

# --- network types (schemas.event.NETWORK_TYPES order) -------------------------------
NET_RESIDENTIAL, NET_MOBILE, NET_BUSINESS, NET_HOSTING, NET_VPN, NET_PROXY, NET_TOR, NET_UNKNOWN = range(8)

# --- counters kept per (account, minute frame), uint32 -------------------------------
# A call counter cannot reach 2**32 in one account-minute (that is thousands of times a
# worker's throughput), so uint32 holds it exactly. A token sum can (one event may carry
# up to 2**32 - 1 tokens): each token column has a uint32 carry word (the high 32 bits,
# ``token_carry``). Closed frames report every counter as int64.
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
DEEP_LOGPROB_CALLS = 11  # top_logprobs >= DEEP_TOP_LOGPROBS
ANON_CALLS = 12  # network type vpn, proxy or tor
HOSTING_CALLS = 13  # network type hosting (cloud)
TEMP_CALLS = 14  # temperature given
TEMP_ZERO_CALLS = 15  # temperature == 0
NEAR_DUP_CALLS = 16  # prompt differs but its simhash is within NEAR_DUP_BITS of a recent one
GAP_COUNT = 17  # inter-arrival gaps measured (calls after the account's first)
STREAM_CALLS = 18
TOPIC_BUCKET0 = 19  # TOPIC_BUCKETS counters: calls per topic bucket (topic hash % TOPIC_BUCKETS)
TOPIC_BUCKETS = 8
WIDE_BIAS_CALLS = TOPIC_BUCKET0 + TOPIC_BUCKETS  # logit bias on >= WIDE_LOGIT_BIAS token ids
TINY_OUTPUT_CALLS = WIDE_BIAS_CALLS + 1  # max_tokens requested in 1..TINY_MAX_TOKENS
CLIENT_MISMATCH_CALLS = TINY_OUTPUT_CALLS + 1  # FLAG_CLIENT_MISMATCH set
NEW_MODEL_CALLS = CLIENT_MISMATCH_CALLS + 1  # FLAG_NEW_MODEL set
N_COUNTERS = NEW_MODEL_CALLS + 1
TOKEN_COUNTER0 = PROMPT_TOKENS  # the token columns, whose sums carry into ``token_carry``
N_TOKEN_COUNTERS = 3
_TOKEN_COLUMNS = (PROMPT_TOKENS, COMPLETION_TOKENS, REASONING_TOKENS)
assert tuple(range(TOKEN_COUNTER0, TOKEN_COUNTER0 + N_TOKEN_COUNTERS)) == _TOKEN_COLUMNS

COUNTER_NAMES: tuple[str, ...] = (
    "calls", "prompt_tokens", "completion_tokens", "reasoning_tokens", "reasoning_calls", "logprob_calls",
    "logit_bias_calls", "multi_n_calls", "error_calls", "rate_limited_calls", "hashed_calls",
    "deep_logprob_calls", "anon_calls", "hosting_calls", "temp_calls", "temp_zero_calls", "near_dup_calls",
    "gap_count", "stream_calls",
    *(f"topic_bucket_{i}" for i in range(TOPIC_BUCKETS)), "wide_bias_calls", "tiny_output_calls",
    "client_mismatch_calls", "new_model_calls",
)
assert len(COUNTER_NAMES) == N_COUNTERS

# --- float sums per frame, float64 ------------------------------------------------------
TEMP_SUM = 0
TEMP_SQ = 1
GAP_SUM = 2  # seconds between consecutive calls of the account
GAP_SQ = 3
N_FLOATS = 4

# --- HyperLogLog sketches per frame: one uint8 register array, sections by offset ------
HLL_PROMPT_BITS, HLL_IP_BITS, HLL_UA_BITS, HLL_ASN_BITS, HLL_TOPIC_BITS = 6, 5, 4, 4, 4
HLL_BITS = (HLL_PROMPT_BITS, HLL_IP_BITS, HLL_UA_BITS, HLL_ASN_BITS, HLL_TOPIC_BITS)
HLL_OFFSETS = tuple(sum(1 << b for b in HLL_BITS[:i]) for i in range(len(HLL_BITS)))
HLL_TOTAL = sum(1 << b for b in HLL_BITS)
D_PROMPTS, D_IPS, D_UAS, D_ASNS, D_TOPICS = range(5)
N_DISTINCT = 5
DISTINCT_NAMES: tuple[str, ...] = ("distinct_prompts", "distinct_ips", "distinct_uas", "distinct_asns",
                                   "distinct_topics")

# --- rolled windows per account (decayed sums over closed frames) ------------------------
# Each closed frame is folded into exponentially decayed sums with these time
# constants (minutes): roughly "the last 5 minutes / hour / day" without keeping
# the frames. Updated in minute order per account, so deterministic.
WINDOW_MINUTES = (5.0, 60.0, 1440.0)
W5, W60, W1440 = range(3)
N_WINDOWS = len(WINDOW_MINUTES)
# Quantities rolled into windows: every counter, every float, the distinct counts
# of each frame and one "active minute" per frame.
WQ_COUNTERS = 0
WQ_FLOATS = N_COUNTERS
WQ_DISTINCT = N_COUNTERS + N_FLOATS
WQ_ACTIVE = WQ_DISTINCT + N_DISTINCT
N_WINDOW_Q = WQ_ACTIVE + 1

# --- per-account scalars (int64) ------------------------------------------------------------
AS_LAST_TS = 0  # event time of the account's latest accepted call (NO_TIME before the first)
AS_WINDOW_MINUTE = 1  # minute of the last frame folded into the windows (NO_FRAME before)
AS_SIMHASH_NEXT = 2  # next position in the recent-simhash ring
N_ACCOUNT_SCALARS = 3
RECENT_SIMHASHES = 4
NEAR_DUP_BITS = 8

FRAME_MS = 60_000
NO_FRAME = -1  # frame_minute value of an empty ring slot
NO_TIME = -(2**62)  # partition max event time before its first event
WATERMARK_ONLY = -1  # kernel slot of an event that moves its partition's watermark and no slot's state


def ring_size(allowed_lateness_ms: int) -> int:
    """Frames kept per account: enough that no open frame is ever overwritten.

    An event is accepted while its frame's end is later than the watermark (max
    event time minus lateness L). A ring position is reused by minute m only
    after minute m - R, whose end (m - R + 1) min is at or before the watermark
    m min - L when L <= (R - 1) min; so R = ceil(L / 1 min) + 1 suffices.
    """
    return -(-allowed_lateness_ms // FRAME_MS) + 1

"""Scoring: the versioned config, each feature against a plain-Python computation, the score rules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.kernels import layout as L
from pipeline.scoring import load_scoring_config, score_frames
from pipeline.scoring.config import ScoringConfigError
from pipeline.scoring.features import FEATURES, compute_features
from pipeline.state.frames import EVENT_COLUMNS, ClosedFrames, FrameStore
from tests.support.alerting import page_threshold

T0 = 1_770_000_000_000


def events(n: int, gap_ms: int, **overrides: object) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {}
    for name, dtype in EVENT_COLUMNS.items():
        cols[name] = np.zeros(n, dtype)
    cols["ts_ms"] = T0 + np.arange(n, dtype=np.int64) * gap_ms
    cols["prompt_hash"] = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    cols["ip_key"] = np.full(n, 0x0A000001, np.uint64)
    cols["temperature"] = np.full(n, np.nan, np.float32)
    cols["status"] = np.full(n, 200, np.uint16)
    cols["prompt_tokens"] = np.full(n, 100, np.uint32)
    cols["completion_tokens"] = np.full(n, 300, np.uint32)
    for k, v in overrides.items():
        cols[k] = np.asarray(v, EVENT_COLUMNS[k]) if np.ndim(v) else np.full(n, v, EVENT_COLUMNS[k])
    return cols


def closed_frames(cols: dict[str, np.ndarray]) -> ClosedFrames:
    store = FrameStore(n_partitions=1, allowed_lateness_ms=0, max_accounts=4)
    store.ensure_slots(1)
    evicted, _ = store.ingest(cols)
    return ClosedFrames.concat([evicted, store.close_frames(force=True)])


def test_default_config_loads_and_names_known_features() -> None:
    config = load_scoring_config()
    assert config.version == 1
    assert all(f in FEATURES for s in config.signals.values() for f in s.ramps)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda c: c["signals"]["ip_fanout"]["ramps"].update({"no_such_feature": {"low": 0, "high": 1}}),
     "no_such_feature"),
    (lambda c: c["signals"]["ip_fanout"].update({"weight": 500}), "signals.ip_fanout.weight"),
    (lambda c: c.pop("volume_gate"), "volume_gate"),
    (lambda c: c.update(alert={"threshold": 70}), "alert: Extra inputs"),  # thresholds moved to the alert rules
    (lambda c: c["signals"]["ip_fanout"]["ramps"]["ips_per_minute"].update({"high": 3}), "low and high"),
])
def test_bad_config_fails_naming_the_field(tmp_path: Path, mutate, fragment: str) -> None:
    config = json.loads((Path(L.__file__).parents[1] / "scoring" / "scoring.v1.json").read_text())
    mutate(config)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ScoringConfigError, match=fragment):
        load_scoring_config(path)


def test_regular_arrivals_have_low_gap_cv_and_poisson_high() -> None:
    regular = closed_frames(events(600, 1000))
    cv = compute_features(regular, ["gap_cv"])["gap_cv"]
    assert cv[-1] < 0.01
    rng = np.random.default_rng(3)
    gaps = rng.exponential(1000, 600).astype(np.int64) + 1
    poisson = events(600, 0)
    poisson["ts_ms"] = T0 + np.cumsum(gaps)
    cv = compute_features(closed_frames(poisson), ["gap_cv"])["gap_cv"]
    assert 0.8 < cv[-1] < 1.2


def test_features_match_a_plain_python_computation_from_the_windows() -> None:
    rng = np.random.default_rng(9)
    n = 900
    cols = events(n, 700, flags=rng.integers(0, 256, n), status=rng.choice([200, 429, 500], n),
                  temperature=rng.choice(np.array([0.0, 0.5, 1.0, np.nan], np.float32), n),
                  net=rng.integers(0, 8, n), topic_hash=rng.integers(1, 5, n) * 7,
                  reasoning_tokens=rng.integers(0, 2000, n), completion_tokens=rng.integers(1, 900, n))
    frames = closed_frames(cols)
    feats = compute_features(frames)
    i = len(frames) - 1
    w60 = [float(x) for x in frames.windows[i, L.W60]]
    w5 = [float(x) for x in frames.windows[i, L.W5]]
    w1440 = [float(x) for x in frames.windows[i, L.W1440]]
    calls = w60[L.CALLS]
    expect = {
        "reasoning_share": w60[L.REASONING_CALLS] / calls,
        "deep_logprob_share": w60[L.DEEP_LOGPROB_CALLS] / calls,
        "rate_limited_share": w60[L.RATE_LIMITED_CALLS] / calls,
        "anon_share": w60[L.ANON_CALLS] / calls,
        "output_input_ratio": w60[L.COMPLETION_TOKENS] / w60[L.PROMPT_TOKENS],
        "take_ratio": (w60[L.COMPLETION_TOKENS] + w60[L.REASONING_TOKENS]) / w60[L.PROMPT_TOKENS],
        "wide_bias_share": w60[L.WIDE_BIAS_CALLS] / calls,
        "tiny_output_share": w60[L.TINY_OUTPUT_CALLS] / calls,
        "reasoning_tokens_per_call": w60[L.REASONING_TOKENS] / calls,
        "temp_zero_share": w60[L.TEMP_ZERO_CALLS] / w60[L.TEMP_CALLS],
        "ips_per_minute": w60[L.WQ_DISTINCT + L.D_IPS] / w60[L.WQ_ACTIVE],
        "active_share_5m": min(w5[L.WQ_ACTIVE] * (1 - math.exp(-1 / 5))
                               / (1 - math.exp(-max(w1440[L.WQ_ACTIVE], 1.0) / 5)), 1.0),
        "volume_ratio": (w5[L.CALLS] / w5[L.WQ_ACTIVE]) / max(w1440[L.CALLS] / w1440[L.WQ_ACTIVE], 1.0),
    }
    n_t = w60[L.TEMP_CALLS]
    mean_t = w60[L.WQ_FLOATS + L.TEMP_SUM] / n_t
    expect["temp_std"] = math.sqrt(max(w60[L.WQ_FLOATS + L.TEMP_SQ] / n_t - mean_t**2, 0.0))
    counts = [w60[L.TOPIC_BUCKET0 + b] for b in range(L.TOPIC_BUCKETS)]
    probs = [c / sum(counts) for c in counts if c > 0]
    expect["topic_entropy"] = -sum(p * math.log2(p) for p in probs)
    for name, value in expect.items():
        assert feats[name][i] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_score_is_capped_weighted_sum_with_named_top_signals() -> None:
    config = load_scoring_config()
    # Poisson-like arrivals over a minute: a metronome would also (rightly) be machine_regularity.
    ts = T0 + np.sort(np.random.default_rng(3).integers(0, 60_000, 400))
    miner = closed_frames(events(400, 150, ts_ms=ts, flags=L.FLAG_DEEP_LOGPROBS | L.FLAG_LOGPROBS,
                                 temperature=np.tile(np.array([0.0, 1.0], np.float32), 200)))
    scores = score_frames(miner, config)
    assert np.allclose(scores.score, np.minimum(scores.contributions.sum(axis=1), 100.0), atol=1e-3)
    last = -1
    assert scores.score[last] >= page_threshold()
    assert scores.top_signals[last][0] == "distribution_probing"
    quiet = closed_frames(events(3, 20_000, flags=L.FLAG_DEEP_LOGPROBS))
    assert score_frames(quiet, config).score.max() < 10  # the volume gate: three calls say little


def test_logit_stealing_alerts_on_wide_bias_probes_not_on_label_calibration() -> None:
    # Carlini et al. 2024: one-token calls biasing hundreds of token ids, top logprobs, machine-paced.
    config = load_scoring_config()
    probe = L.FLAG_LOGIT_BIAS | L.FLAG_TINY_MAX_TOKENS | L.FLAG_LOGPROBS
    stealer = score_frames(closed_frames(events(400, 300, flags=probe | L.FLAG_WIDE_LOGIT_BIAS,
                                                prompt_tokens=40, completion_tokens=1)), config)
    assert stealer.score[-1] >= page_threshold()
    assert stealer.top_signals[-1][0] == "logit_stealing"
    # A calibrated classifier: the same call shape over its few label tokens, temperature 0.
    calibrator = score_frames(closed_frames(events(400, 300, flags=probe, prompt_tokens=180, completion_tokens=1,
                                                   temperature=0.0)), config)
    assert calibrator.contributions[:, calibrator.names.index("logit_stealing")].max() == 0.0
    assert calibrator.score.max() < page_threshold()


def _templated(n: int, prompt_tokens: int, completion_tokens: int) -> dict[str, np.ndarray]:
    # Distinct prompts from one template: simhashes one bit apart from a base, prompt hashes all new.
    base = np.uint64(0x0123_4567_89AB_CDEF)
    simhash = base ^ (np.uint64(1) << (np.arange(n, dtype=np.uint64) % np.uint64(64)))
    return events(n, 500, simhash=simhash, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def test_template_signals_need_what_is_taken() -> None:
    config = load_scoring_config()
    sweep = score_frames(closed_frames(_templated(600, 300, 450)), config)
    points = dict(zip(sweep.names, sweep.contributions[-1].tolist(), strict=True))
    assert points["template_sweep"] > 50 and points["prompt_diversity"] > 0
    # Nightly summarisation: one template, unique long inputs, short outputs.
    digest = score_frames(closed_frames(_templated(600, 4000, 220)), config)
    features = compute_features(closed_frames(_templated(600, 4000, 220)), ["near_dup_share", "prompt_diversity"])
    assert features["near_dup_share"][-1] > 0.9 and features["prompt_diversity"][-1] > 0.9  # looks like a sweep
    for name in ("template_sweep", "prompt_diversity"):
        assert digest.contributions[:, digest.names.index(name)].max() == 0.0
    assert digest.score.max() < page_threshold()


def test_an_account_calling_every_minute_since_its_first_call_is_fully_active_from_the_start() -> None:
    # One call every 20 s for 4 minutes: each closed frame is as active as its age allows.
    busy = compute_features(closed_frames(events(12, 20_000)), ["active_share_5m", "active_share_1h"])
    assert np.allclose(busy["active_share_5m"], 1.0, atol=1e-3)
    assert np.allclose(busy["active_share_1h"], 1.0, atol=1e-3)
    # The same calls with a pause of 10 minutes after the first two: the minutes after it are not full.
    ts = np.r_[np.arange(2) * 20_000, 600_000 + np.arange(10) * 20_000]
    paused = compute_features(closed_frames(events(12, 20_000, ts_ms=T0 + ts)), ["active_share_5m"])
    assert paused["active_share_5m"][1] < 0.8  # the first minute after the pause


def test_a_few_calls_that_take_a_lot_pass_the_volume_gate_and_a_few_small_ones_do_not() -> None:
    """A reseller's distiller at a customer's rate (15 calls in the hour, each demanding full reasoning, thousands of
    answer and reasoning tokens each) is gated by what it takes; the same calls with a chat app's answers, or
    fewer calls than the gate's ``low``, stay gated by their calls."""
    config = load_scoring_config()
    assert config.taken_gate is not None
    reasoning = L.FLAG_REASONING  # the call asks for step-by-step reasoning

    def last_frame(n: int, completion: int, reasoning_tokens: int, flags: int) -> tuple[float, dict[str, float]]:
        frames = closed_frames(events(n, 240_000, flags=flags, prompt_tokens=250, completion_tokens=completion,
                                      reasoning_tokens=reasoning_tokens))
        scores = score_frames(frames, config)
        gate_features = compute_features(frames, ["calls_1h", "taken_1h"])
        return float(scores.score[-1]), {k: float(v[-1]) for k, v in gate_features.items()}

    score, gate = last_frame(15, 700, 3000, reasoning)
    assert config.volume_gate.low <= gate["calls_1h"] < config.volume_gate.high / 2  # the calls' ramp: under half
    assert gate["taken_1h"] >= config.taken_gate.high
    assert score >= page_threshold()
    chat_score, chat_gate = last_frame(15, 280, 0, 0)  # chat answers, no reasoning: the calls' ramp alone
    assert chat_gate["taken_1h"] < config.taken_gate.low and chat_score < 10
    few_score, few_gate = last_frame(3, 700, 3000, reasoning)  # under volume_gate.low calls: no gate at all
    assert few_gate["calls_1h"] < config.volume_gate.low and few_gate["taken_1h"] >= config.taken_gate.low
    assert few_score == 0.0

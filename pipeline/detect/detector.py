"""Detector: decoded events in, signature rows and alerts out. No I/O, no Faust.

One instance per worker process holds the account registry, the frame state and
the alert rules' lifecycle state (``pipeline/alerting/engine.py``, checkpointed per account).
``process`` is called with each decoded batch in order;
``force_close`` ends bounded input (the watermark jumps to +infinity).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from pipeline.alerting.alert_rows import AlertRows
from pipeline.alerting.engine import AlertSetup, AlertState, BatchFacts, evaluate_accounts
from pipeline.alerting.transitions import AlertTransition
from pipeline.decode.client_claims import client_mismatch
from pipeline.decode.derived import derived_kernel_columns
from pipeline.decode.json_events import DecodedBatch
from pipeline.decode.model_release import ModelReleases
from pipeline.kernels import layout as L
from pipeline.scoring import Scores, ScoringConfig, load_scoring_config, score_frames
from pipeline.settings import Settings
from pipeline.state.accounts import AccountRegistry
from pipeline.state.api_keys import ApiKeyFrames
from pipeline.state.frames import EVENT_COLUMNS, ClosedFrames, FrameStore

# Frame counters stored in signatures_1m as they are.
STORED_COUNTERS = (
    "calls", "prompt_tokens", "completion_tokens", "reasoning_tokens", "reasoning_calls", "logprob_calls",
    "deep_logprob_calls", "logit_bias_calls", "multi_n_calls", "error_calls", "rate_limited_calls", "anon_calls",
    "hosting_calls", "temp_zero_calls", "near_dup_calls", "stream_calls",
)
_COUNTER_INDEX = {name: i for i, name in enumerate(L.COUNTER_NAMES)}
# key_signatures_1m stores fewer: an API key's frames are read beside its account's.
_KEY_COUNTERS = ("reasoning_calls", "deep_logprob_calls")
_KEY_DISTINCTS = ("distinct_prompts", "distinct_ips")
_FLAGS_DTYPE = EVENT_COLUMNS["flags"]  # uint16: the decoder's uint8 bits and the detector's
# Names of the keyed state stores (checkpoint record keys start with them).
ACCOUNT_STORE = "account"
KEY_STORE = "api_key"


@dataclass(frozen=True)
class DetectionOutput:
    signatures: dict[str, object]  # signatures_1m columns
    alerts: AlertRows
    late_events: int
    scores: Scores
    key_signatures: dict[str, object]  # key_signatures_1m columns
    # Firing and resolved page alerts, for the outbox and the actions topic (monitor mode and
    # suppressed firings are rows in ``alerts`` only).
    transitions: list[AlertTransition] = field(default_factory=list)
    suppressed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, reason) -> firings

    @property
    def signature_rows(self) -> int:
        return len(self.signatures["account_id"])  # type: ignore[arg-type]


def request_shape_flags(raw: dict[str, object]) -> np.ndarray:
    """Flag bits the decoder does not set, from the raw columns: a wide logit bias, a tiny max_tokens,
    a browser user agent on a client whose handshake is not that browser's (the new-model bit, which
    needs the detector's state, is ``new_model_flags``).

    Parameter stealing (docs/signals.md, ``logit_stealing``) is told apart from label
    calibration by how many token ids a call biases, which the decoder's flags reduce to a bit.
    """
    bias = np.asarray(raw["logit_bias_count"])
    max_tokens = np.asarray(raw["max_tokens"])  # 0: absent
    flags = np.where(bias >= L.WIDE_LOGIT_BIAS, L.FLAG_WIDE_LOGIT_BIAS, 0)
    flags |= np.where((max_tokens > 0) & (max_tokens <= L.TINY_MAX_TOKENS), L.FLAG_TINY_MAX_TOKENS, 0)
    mismatch = client_mismatch(raw["user_agent"], raw["tls_fingerprint"], raw["http2_fingerprint"])  # type: ignore[arg-type]
    flags |= np.where(mismatch, L.FLAG_CLIENT_MISMATCH, 0)
    return flags.astype(_FLAGS_DTYPE)


def new_model_flags(releases: ModelReleases, batch: DecodedBatch) -> np.ndarray:
    """FLAG_NEW_MODEL on each call whose model is newly released (``releases`` first folds the batch in)."""
    new = releases.observe(batch.raw["model"], batch.kernel["ts_ms"], batch.kernel["status"])  # type: ignore[arg-type]
    return np.where(new, L.FLAG_NEW_MODEL, 0).astype(_FLAGS_DTYPE)


def _frame_cv(frames: ClosedFrames) -> np.ndarray:
    n = frames.counters[:, L.GAP_COUNT].astype(np.float64)
    safe = np.maximum(n, 1.0)
    mean = frames.floats[:, L.GAP_SUM] / safe
    var = np.maximum(frames.floats[:, L.GAP_SQ] / safe - mean * mean, 0.0)
    return np.where((n >= 2) & (mean > 0), np.sqrt(var) / np.where(mean > 0, mean, 1.0), 0.0)


def _frame_temp_std(frames: ClosedFrames) -> np.ndarray:
    n = np.maximum(frames.counters[:, L.TEMP_CALLS].astype(np.float64), 1.0)
    mean = frames.floats[:, L.TEMP_SUM] / n
    return np.sqrt(np.maximum(frames.floats[:, L.TEMP_SQ] / n - mean * mean, 0.0))


class Detector:
    def __init__(self, settings: Settings, n_partitions: int, config: ScoringConfig | None = None,
                 alerting: AlertSetup | None = None) -> None:
        """``alerting``: rules, allow-list and live context loaded once per process (default: from settings)."""
        self.config = config or load_scoring_config(settings.scoring_config)
        self.accounts = AccountRegistry()
        self.frames = FrameStore(
            n_partitions=n_partitions,
            allowed_lateness_ms=settings.allowed_lateness_ms,
            max_accounts=settings.max_accounts,
        )
        self.alerting = alerting or AlertSetup.from_settings(settings, self.config)
        self.alert_state = AlertState()
        self.max_score: dict[str, float] = {}
        # Model -> first-seen event time over everything this worker reads (not per partition): which
        # models are newly released. Checkpointed in every partition marker (pipeline/state/manager.py).
        self.models = ModelReleases()
        # The same kernels per API key, for keys whose frames are not their account's.
        self.track_keys = settings.track_api_keys
        self.key_frames = FrameStore(
            n_partitions=n_partitions,
            allowed_lateness_ms=settings.allowed_lateness_ms,
            max_accounts=settings.max_accounts,
        )
        self.api_keys = ApiKeyFrames(self.accounts, self.key_frames)
        self.keys = self.api_keys.keys  # every API key seen

    def process(self, batch: DecodedBatch, *, force_close: bool = False) -> DetectionOutput:
        columns = dict(batch.kernel)
        columns.update(derived_kernel_columns(batch.raw))  # type: ignore[arg-type]
        columns["flags"] = (np.asarray(columns["flags"], _FLAGS_DTYPE) | request_shape_flags(batch.raw)  # type: ignore[arg-type]
                            | new_model_flags(self.models, batch))
        account_slots = self.accounts.slots_for(batch.account_ids)
        # An account's partition is its events' even when all of them come too late to fold (the kernel sets
        # it only for folded events): route() may mark a new account changed, and the checkpoint files its
        # block under that partition, whose input position must be the one these events came from.
        self.frames.ensure_slots(len(self.accounts))
        self.frames.slot_part[account_slots] = columns["part"]
        key_slots = (self.api_keys.route(account_slots, batch.raw["api_key_id"], batch.account_ids,  # type: ignore[arg-type]
                                         self.frames) if self.track_keys else None)  # routed before folding
        columns["slot"] = account_slots
        closed, late = self._fold(self.frames, columns, len(self.accounts), force_close)
        if key_slots is None:
            return self._outputs(batch, closed, late, self._key_rows(ClosedFrames.concat([])))
        columns["slot"] = key_slots
        key_closed, _ = self._fold(self.key_frames, columns, len(self.api_keys.split), force_close)
        return self._outputs(batch, closed, late, self._key_rows(self.api_keys.closed_key_frames(closed, key_closed)))

    @staticmethod
    def _fold(store: FrameStore, columns: dict[str, np.ndarray], n_slots: int,
              force_close: bool) -> tuple[ClosedFrames, int]:
        store.ensure_slots(n_slots)
        if len(columns["slot"]):
            closed_early, late = store.ingest(columns)
        else:
            closed_early, late = ClosedFrames.concat([]), 0
        return ClosedFrames.concat([closed_early, store.close_frames(force=force_close)]), late

    def _scored_rows(self, closed: ClosedFrames, counters: tuple[str, ...],
                     distincts: tuple[str, ...]) -> tuple[ClosedFrames, Scores, np.ndarray, dict[str, object]]:
        """Closed frames in (slot, minute) order, their scores and rounded signal points (as stored:
        backtests read the same), and a signature table's columns: those both tables have, then these
        frame counters and distinct counts."""
        frames = closed.take(np.lexsort((closed.minute, closed.slot)))
        scores = score_frames(frames, self.config)
        points = np.round(scores.contributions, 2).astype(np.float32)
        rows: dict[str, object] = {
            "window_start": frames.minute * 60,
            "calls": frames.counters[:, L.CALLS],
            "calls_1h": frames.windows[:, L.W60, L.CALLS],
            "score": scores.score,
            "top_signals": scores.top_signals,
            "signal_names": [scores.names] * len(frames),
            "signal_points": points.tolist(),
        }
        for name in counters:
            rows[name] = frames.counters[:, _COUNTER_INDEX[name]]
        for name in distincts:
            rows[name] = frames.distinct[:, L.DISTINCT_NAMES.index(name)]
        return frames, scores, points, rows

    def _key_rows(self, closed: ClosedFrames) -> dict[str, object]:
        """key_signatures_1m rows of closed key frames (``slot`` = key id)."""
        frames, _, _, rows = self._scored_rows(closed, _KEY_COUNTERS, _KEY_DISTINCTS)
        key_account = self.api_keys.key_account
        return {"account_id": [key_account[s] for s in frames.slot.tolist()],
                "api_key_id": self.keys.names_of(frames.slot), **rows}

    def _outputs(self, batch: DecodedBatch, closed: ClosedFrames, late: int,
                 key_rows: dict[str, object]) -> DetectionOutput:
        frames, scores, points, sig = self._scored_rows(closed, STORED_COUNTERS, L.DISTINCT_NAMES)  # per account
        accounts = self.accounts.names_of(frames.slot)
        for account, score in zip(accounts, scores.score.tolist(), strict=True):
            if score > self.max_score.get(account, -1.0):
                self.max_score[account] = score
        sig = {"account_id": accounts, **sig}
        sig["gap_cv"] = _frame_cv(frames).astype(np.float32)
        sig["temp_std"] = _frame_temp_std(frames).astype(np.float32)
        sig["calls_5m"] = frames.windows[:, L.W5, L.CALLS]
        sig["calls_24h"] = frames.windows[:, L.W1440, L.CALLS]
        sig["active_minutes_1h"] = frames.windows[:, L.W60, L.WQ_ACTIVE]
        watermark = self.frames.watermark_ms()
        found = evaluate_accounts(self.alerting, {**sig, "signal_points": points}, self.alert_state,
                                  now_ms=watermark if watermark > 0 else None,
                                  batch=BatchFacts(batch.account_ids, batch.raw))
        self._mark_alert_changes()
        return DetectionOutput(sig, found.alerts, late, scores, key_rows, found.transitions, found.suppressed)

    def _mark_alert_changes(self) -> None:
        # An alert state can change without a closed frame (resolved by the watermark, lifted by a
        # false positive): flag those accounts so the next checkpoint carries it.
        slots = [s for a in self.alert_state.take_changed() if (s := self.accounts.slot_of(a)) is not None]
        if slots:
            self.frames.mark_dirty(np.array(slots, np.int64))

    # --- keyed state, for checkpoints (pipeline/state/snapshot.py) ---------------------
    def state_stores(self) -> dict[str, tuple[AccountRegistry, FrameStore]]:
        """Every keyed store of state: name -> (entity registry, its frame arrays).

        Everything per entity lives in the store's slot arrays plus ``entity_extras``;
        a store added here is checkpointed and restored without other changes.
        """
        stores = {ACCOUNT_STORE: (self.accounts, self.frames)}
        if self.track_keys:
            stores[KEY_STORE] = (self.api_keys.split, self.key_frames)
        return stores

    def entity_extras(self, store: str, slot: int) -> dict[str, object]:
        """Per-entity state held in Python objects (JSON-able), for the checkpoint."""
        if store == KEY_STORE:
            return self.api_keys.key_extras(slot)
        account = self.accounts.names[slot]
        extras: dict[str, object] = self.api_keys.account_extras(slot) if self.track_keys else {}
        alerts = self.alert_state.account_json(account)
        if alerts is not None:
            extras["alerts"] = alerts
        if account in self.max_score:
            extras["max_score"] = self.max_score[account]
        return extras

    def worker_state(self) -> dict[str, object]:
        """State of the worker that belongs to no entity or partition (JSON-able): the model
        first-seen map. Written in every partition marker of a checkpoint."""
        return {"models": self.models.as_json()}

    def load_worker_state(self, state: Mapping[str, object]) -> None:
        """Merge ``worker_state`` of a checkpoint (of this worker or another) into this one."""
        models = state.get("models")
        if isinstance(models, Mapping):
            self.models.merge_json(models)

    def load_entity_extras(self, store: str, slot: int, extras: dict[str, object]) -> None:
        """Inverse of ``entity_extras`` for an entity just registered at ``slot``."""
        if store == KEY_STORE:
            self.api_keys.load_key_extras(slot, extras)
            return
        if self.track_keys:
            self.api_keys.load_account_extras(slot, extras)
        name = self.accounts.names[slot]
        if "alerts" in extras:
            self.alert_state.load_account(name, extras["alerts"])  # type: ignore[arg-type]
            self.alert_state.changed.discard(name)  # loaded as checkpointed: nothing new to write
        if "max_score" in extras:
            self.max_score[name] = float(extras["max_score"])  # type: ignore[arg-type]

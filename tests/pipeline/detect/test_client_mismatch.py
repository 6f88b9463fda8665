"""A browser user agent on a non-browser handshake: decoded columns -> flag -> counter -> feature -> signal."""

from __future__ import annotations

import numpy as np
import orjson

from pipeline.decode.json_events import DecodedBatch
from pipeline.detect.detector import Detector, request_shape_flags
from pipeline.kernels import layout as L
from pipeline.settings import load_settings
from tests.support.alerting import page_threshold
from tests.support.client_fingerprints import CHROME, JA4_H1, JA4_H2, h2
from tests.support.events import MINIMAL, poisson_offsets_ms
from tests.support.state import decode

T0 = 1_770_888_600_000


def batch(events: list[dict]) -> DecodedBatch:
    values = [orjson.dumps(e) for e in events]
    n = len(values)
    return decode(values, [None] * n, [0] * n, list(range(n)))


def _calls(account: str, n: int, **fields: object) -> list[dict]:
    return [{**MINIMAL, "event_id": f"{account}-{i}", "ts": T0 + t, "account_id": account, **fields}
            for i, t in enumerate(poisson_offsets_ms(n, 500))]


def test_request_shape_flags_sets_the_client_mismatch_bit() -> None:
    decoded = batch(_calls("a", 2, user_agent=CHROME, tls_fingerprint=JA4_H1, max_tokens=1)
                    + _calls("b", 1, user_agent=CHROME, tls_fingerprint=JA4_H2))
    flags = request_shape_flags(decoded.raw)  # type: ignore[arg-type]
    assert flags.dtype == np.uint16
    assert flags.tolist() == [L.FLAG_CLIENT_MISMATCH | L.FLAG_TINY_MAX_TOKENS] * 2 + [0]


def test_a_library_dressed_as_chrome_scores_and_a_real_chrome_does_not() -> None:
    det = Detector(load_settings(), n_partitions=1)
    n = 600  # five minutes at two calls a second: past the volume gate
    spoof = _calls("org-spoof", n, user_agent=CHROME, tls_fingerprint=JA4_H1)
    chrome = _calls("org-chrome", n, user_agent=CHROME, tls_fingerprint=JA4_H2, http2_fingerprint=h2("m,a,s,p"))
    out = det.process(batch([e for pair in zip(spoof, chrome, strict=True) for e in pair]), force_close=True)
    accounts = np.array(out.signatures["account_id"])
    share = out.scores.features["client_mismatch_share"]
    points = out.scores.contributions[:, out.scores.names.index("client_mismatch")]
    weight = det.config.signals["client_mismatch"].weight
    last_spoof = np.flatnonzero(accounts == "org-spoof")[-1]
    assert share[last_spoof] == 1.0
    assert points[last_spoof] == weight  # every call disagrees, past the volume gate: full weight
    assert "client_mismatch" in out.scores.top_signals[last_spoof]
    assert share[accounts == "org-chrome"].max() == 0.0 and points[accounts == "org-chrome"].max() == 0.0
    # evidence that adds to others: alone it does not page
    assert weight < page_threshold()
    assert len(out.alerts) == 0

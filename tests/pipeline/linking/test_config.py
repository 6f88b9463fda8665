from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.linking.config import DEFAULT_CONFIG, FACTORS, KINDS, LinkingConfigError, load_linking_config


def test_default_file_is_valid_and_complete() -> None:
    config = load_linking_config()
    assert set(config.kinds) == set(KINDS)
    assert set(config.cluster.factors) == set(FACTORS)
    # The documented linking rules follow from the shipped weights.
    w, threshold = config.weight, config.link_threshold
    assert w("pay") >= threshold
    assert w("ip") + w("tpl") >= threshold
    assert w("asn") + w("ua") + w("ip") < threshold
    assert w("tpl") + w("asn") + w("ua") < threshold
    # A client stack links beside a template; without one it is no evidence (every library user shares it).
    assert config.strength({"tpl", "tls", "h2"}) >= threshold
    assert config.points({"ip", "asn", "ua", "tls", "h2"}) == {"ip": w("ip"), "asn": w("asn"), "ua": w("ua")}
    # Timing correlation links on its own: a load-balanced fleet may share nothing else (docs/linking.md).
    assert w("sync") >= threshold
    assert config.sync.ring_minutes == config.sync.repeat_minutes + config.sync.window_minutes + \
        config.sync.settle_minutes + 1


def _write(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = json.loads(DEFAULT_CONFIG.read_text())
    change(data)
    path = tmp_path / "linking.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["kinds"].pop("tpl"), r"kinds: .*missing \['tpl'\]"),
    (lambda d: d["kinds"].update(email={"weight": 1, "cap": 5, "why": "x"}), r"kinds: .*unknown \['email'\]"),
    (lambda d: d["kinds"]["pay"].update(weight=-1), r"kinds\.pay\.weight"),
    (lambda d: d["kinds"]["ua"].update(cap=1), r"kinds\.ua\.cap"),
    (lambda d: d["kinds"]["tls"].update(only_with="tls"), r"kinds: .*tls\.only_with must name another kind"),
    (lambda d: d["kinds"]["h2"].update(only_with="email"), r"kinds: .*h2\.only_with must name another kind"),
    (lambda d: d["template"].update(bands=3), r"template: .*bands × band_bits must be 64"),
    (lambda d: d["sync"].update(min_active_minutes=61), r"sync: .*min_active_minutes \(61\) exceeds window_minutes"),
    (lambda d: d["sync"].update(trend_minutes=130), r"sync: .*trend_minutes \(130\) exceeds twice"),
    (lambda d: d["sync"]["early"].update(window_minutes=60), r"sync: .*early.window_minutes \(60\) must be under"),
    (lambda d: d["sync"]["early"].update(step_minutes=3), r"sync: .*multiple of early.step_minutes \(3\)"),
    (lambda d: d["sync"]["early"].update(min_active_minutes=31), r"sync: .*min_active_minutes \(31\) exceeds"),
    (lambda d: d["sync"].update(step_minutes=70), r"sync: .*step_minutes \(70\) exceeds"),
    (lambda d: d["sync"].update(min_r=1.0), r"sync\.min_r"),
    (lambda d: d.pop("sync"), r"sync: Field required"),
    (lambda d: d["cluster"]["factors"]["size"].update(weight=50), r"cluster\.factors: .*sum to 100"),
    (lambda d: d["cluster"].update(max_listed_features=0), r"cluster\.max_listed_features"),
    (lambda d: d["cluster"].update(alert_threshold=60), r"cluster\.alert_threshold: Extra inputs"),
    (lambda d: d.pop("link_threshold"), r"link_threshold: Field required"),
    (lambda d: d.update(extra=1), r"extra: Extra inputs"),
])
def test_bad_file_fails_naming_the_field(tmp_path: Path, change: Callable[[dict[str, Any]], None],
                                         message: str) -> None:
    with pytest.raises(LinkingConfigError, match=message):
        load_linking_config(_write(tmp_path, change))


def test_unreadable_or_invalid_json_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(LinkingConfigError, match=r"missing\.json"):
        load_linking_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LinkingConfigError, match=r"bad\.json"):
        load_linking_config(bad)

"""Configuration: defaults, environment variables, and errors that name the variable."""

from __future__ import annotations

import pytest

from pipeline.settings import SettingsError, load_settings


def test_defaults_are_embedded(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DW_DATA_DIR", str(tmp_path))
    s = load_settings()
    assert s.effective_clickhouse_dsn == f"chdb://{(tmp_path / 'clickhouse').resolve()}"
    assert s.topic_events == "api-calls" and s.topic_dlq == "api-calls-dlq"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DW_KAFKA_BOOTSTRAP", "kafka://b1:9092, b2:9093")
    monkeypatch.setenv("DW_CLICKHOUSE_DSN", "http://default:pw@ch:8123")
    monkeypatch.setenv("DW_PARTITIONS", "12")
    s = load_settings()
    assert s.bootstrap_servers == ["b1:9092", "b2:9093"] and s.partitions == 12
    assert s.effective_clickhouse_dsn == "http://default:pw@ch:8123"


@pytest.mark.parametrize("var, value, fragment", [
    ("DW_PARTITIONS", "0", "DW_PARTITIONS"),
    ("DW_PARTITIONS", "many", "DW_PARTITIONS"),
    ("DW_KAFKA_BOOTSTRAP", "no-port-here", "DW_KAFKA_BOOTSTRAP"),
    ("DW_CLICKHOUSE_DSN", "mysql://x", "DW_CLICKHOUSE_DSN"),
    ("DW_TOPIC_EVENTS", "bad topic!", "DW_TOPIC_EVENTS"),
    ("DW_ALERT_SCORE_THRESHOLD", "150", "DW_ALERT_SCORE_THRESHOLD"),
    ("DW_STORE_RAW_EVENTS", "perhaps", "DW_STORE_RAW_EVENTS"),
])
def test_bad_configuration_names_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str,
                                              fragment: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert fragment in str(info.value) and value in str(info.value)


def test_same_topic_for_events_and_dead_letters_is_refused() -> None:
    with pytest.raises(SettingsError, match="DW_TOPIC_DLQ"):
        load_settings(topic_events="x", topic_dlq="x")


def test_unknown_dw_variable_is_not_silently_accepted_as_override() -> None:
    with pytest.raises(SettingsError, match="DW_NOT_A_SETTING"):
        load_settings(not_a_setting=1)

from __future__ import annotations

from jobs.worker_process import settings_env
from pipeline.settings import load_settings


def test_secrets_reach_the_child_worker_as_their_values() -> None:
    env = settings_env(load_settings(web_token="tok-1", pagerduty_routing_key="rk-2"))
    # str(SecretStr) is '**********': a child given that would refuse every request with the real token.
    assert env["DW_WEB_TOKEN"] == "tok-1"
    assert env["DW_PAGERDUTY_ROUTING_KEY"] == "rk-2"
    assert settings_env(load_settings())["DW_WEB_TOKEN"] == ""

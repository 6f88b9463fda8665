from __future__ import annotations

import pytest
from pydantic import SecretStr

from pipeline.web.auth import auth_headers, check_bearer

TOKEN = SecretStr("s3cret-Tök")  # non-ASCII: compared as bytes


def test_no_token_set_lets_every_request_through() -> None:
    assert check_bearer(None, SecretStr("")) is None
    assert check_bearer("Bearer anything", SecretStr("")) is None
    assert auth_headers(SecretStr("")) == {}


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic czNjcmV0", "s3cret-Tök"])
def test_a_missing_token_gets_401_with_a_bearer_challenge(header: str | None) -> None:
    reply = check_bearer(header, TOKEN)
    assert reply is not None and reply.status == 401
    assert reply.headers == {"WWW-Authenticate": 'Bearer realm="distillwatch"'}
    assert reply.json()["reason"] == "unauthorized"


@pytest.mark.parametrize("header", ["Bearer s3cret", "Bearer s3cret-Tök2", "Bearer S3CRET-TÖK", "Bearer \u00e9"])
def test_a_wrong_token_gets_401_invalid_token_and_is_not_echoed(header: str) -> None:
    reply = check_bearer(header, TOKEN)
    assert reply is not None and reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="distillwatch", error="invalid_token"'
    assert b"s3cret" not in reply.body.lower()


@pytest.mark.parametrize("header", ["Bearer s3cret-Tök", "bearer s3cret-Tök", "  Bearer   s3cret-Tök  "])
def test_the_right_token_passes(header: str) -> None:
    assert check_bearer(header, TOKEN) is None


def test_clients_send_the_token_the_check_accepts() -> None:
    assert check_bearer(auth_headers(TOKEN)["Authorization"], TOKEN) is None

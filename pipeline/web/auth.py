"""The optional bearer token (DW_WEB_TOKEN) on the worker's /query and /drain.

When the token is empty every request passes. Otherwise a request must send
``Authorization: Bearer <token>``; anything else gets 401 with ``WWW-Authenticate``
(RFC 6750). The token is compared in constant time and never echoed.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr

from pipeline.web.reply import Reply, json_reply

_REALM = 'Bearer realm="distillwatch"'


def check_bearer(authorization: str | None, token: SecretStr) -> Reply | None:
    """None when the request may proceed, else the 401 reply to send."""
    expected = token.get_secret_value()
    if not expected:
        return None
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return json_reply({"error": "this endpoint needs 'Authorization: Bearer <DW_WEB_TOKEN>'",
                           "reason": "unauthorized"}, 401, {"WWW-Authenticate": _REALM})
    # Bytes: compare_digest refuses non-ASCII str, and a client may send anything.
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return json_reply({"error": "wrong bearer token", "reason": "unauthorized"}, 401,
                          {"WWW-Authenticate": f'{_REALM}, error="invalid_token"'})
    return None


def auth_headers(token: SecretStr) -> dict[str, str]:
    """Headers a client of the worker sends: the bearer token when one is set, else none."""
    secret = token.get_secret_value()
    return {"Authorization": f"Bearer {secret}"} if secret else {}

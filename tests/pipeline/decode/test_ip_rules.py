"""Client IPs: the C fast path for IPv4 accepts exactly what ipaddress accepts, normalised the same."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.decode.client_ip import ip_entry, ip_key, ipv4_canonical


def reference(address: str) -> tuple[str, int] | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    value = int(ip)
    return str(ip), value if ip.version == 4 else (value >> 64) ^ (value & 0xFFFFFFFFFFFFFFFF)


TRICKY = ["1.2.3.4", "01.2.3.4", "1.2.3.04", "00.0.0.0", "1.2.3", "1.2.3.4.5", "256.1.1.1", "255.255.255.255",
          "0.0.0.0", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4\n", "1.2.3.4\x00", "\u0661.2.3.4", "1..3.4", "+1.2.3.4",
          "0x1.2.3.4", "1.2.3.4/24", "::1", "::ffff:1.2.3.4", "2001:DB8::1", ""]


@pytest.mark.parametrize("address", TRICKY)
def test_tricky_addresses(address: str) -> None:
    assert ip_entry(address) == reference(address)
    fast = ipv4_canonical(address)
    assert fast is None or fast == reference(address)


@given(st.text(alphabet="0123456789.:x -+\x00\u0661", max_size=18))
def test_fast_path_never_accepts_what_ipaddress_refuses(address: str) -> None:
    fast = ipv4_canonical(address)
    assert fast is None or fast == reference(address)
    assert ip_entry(address) == reference(address)


def test_every_canonical_dotted_quad_takes_the_fast_path() -> None:
    rng = random.Random(3)
    for _ in range(20_000):
        address = ".".join(str(rng.randint(0, 255)) for _ in range(4))
        assert ipv4_canonical(address) == reference(address)


def test_ip_key_of_an_address_the_contract_refused_raises() -> None:
    assert ip_key("2001:db8::1") == reference("2001:db8::1")[1]  # type: ignore[index]
    with pytest.raises(ValueError, match="not an IP address"):
        ip_key("01.2.3.4")

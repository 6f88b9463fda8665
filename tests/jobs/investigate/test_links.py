"""Link evidence rebuilt from entity values (jobs/investigate/links.py), on hand-made members."""

from __future__ import annotations

from jobs.investigate.links import feature_name, member_links, template_pairs
from pipeline.linking.config import load_linking_config
from pipeline.linking.feature_keys import ip_prefix, ua_feature

CONFIG = load_linking_config()
BASE = 0x9F3A_1234_5678_ABCD


def test_feature_names_match_the_linking_stage() -> None:
    assert feature_name("ip_net", "203.0.113.0/24") == ip_prefix("203.0.113.9")
    assert feature_name("ip_net", "2001:db8:1::/48") == ip_prefix("2001:db8:1::5")
    assert feature_name("user_agent", "curl/8.5") == ua_feature("curl/8.5")
    assert (feature_name("payment", "fp1"), feature_name("asn", "64500")) == ("pay:fp1", "asn:64500")


def test_templates_link_within_the_hamming_distance_only() -> None:
    near = BASE ^ 0b1011  # 3 bits apart
    far = BASE ^ ((1 << 64) - 1 ^ 0xFFFF)  # only the lowest band equal, 48 bits apart
    found = template_pairs({"a": [BASE], "b": [near], "c": [far]}, CONFIG)
    assert set(found) == {("a", "b")}
    ha, hb, _ = found[("a", "b")]
    assert (ha, hb) == (BASE, near)


def test_points_count_each_kind_once_and_popular_values_nothing() -> None:
    values = {
        "a": {"payment": {"fp1"}, "ip_net": {"1.2.3.0/24", "5.6.7.0/24"}, "asn": {"64500"}},
        "b": {"payment": {"fp1"}, "ip_net": {"1.2.3.0/24", "5.6.7.0/24"}, "asn": {"64500"}},
        "c": {"ip_net": {"1.2.3.0/24"}, "asn": {"64500"}},
    }
    links = {(link.a, link.b): link for link in member_links(values, {}, {("asn", "64500")}, CONFIG)}
    ab = links[("a", "b")]
    assert ab.points == {"pay": 1.0, "ip": 0.45} and ab.strength == 1.45 and ab.linked
    assert [f.popular for f in ab.features if f.kind == "asn"] == [True]
    ac = links[("a", "c")]
    assert ac.strength == 0.45 and not ac.linked
    # A template adds its weight: ip + tpl reaches the threshold (0.45 + 0.55).
    with_tpl = {(x.a, x.b): x for x in member_links(values, {"a": [BASE], "c": [BASE ^ 1]}, set(), CONFIG)}
    assert with_tpl[("a", "c")].linked and with_tpl[("a", "c")].points["tpl"] == 0.55

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import orjson
import pytest

from pipeline.linking.config import LinkingConfig, TemplateConfig
from pipeline.linking.feature_keys import feature_partition, h2_feature, ip_prefix, ua_feature
from pipeline.linking.messages import decode, pack_observations
from pipeline.linking.observations import AccountSummary, LinkColumns, Observations, TemplateCarry, extract_pairs
from tests.support.link_builders import Columns, make_batch

Obs = dict[tuple[str, str], tuple[int, int]]  # (feature, account) -> (ts, sample)


def extract_observations(
    batch: LinkColumns, template: TemplateConfig, carry: TemplateCarry | None = None
) -> tuple[Observations, AccountSummary, TemplateCarry]:
    """``extract_pairs`` with every pair named (the publisher names only the pairs it has not sent)."""
    pairs, summary, carry = extract_pairs(batch, template, carry)
    return pairs.named(batch.raw, template.band_bits), summary, carry


def _keep_first(out: Obs, key: tuple[str, str], ts: int, sample: int) -> None:
    if key not in out or (ts, sample) < out[key]:
        out[key] = (ts, sample)


def reference(batch: Columns, config: LinkingConfig, carry: TemplateCarry) -> Obs:
    """Event by event, every pair compared: the rules of the observations module, spelled out."""
    raw: dict[str, Any] = batch.raw  # type: ignore[assignment]
    out: Obs = {}
    simhashes: dict[tuple[int, str], int] = {}  # distinct (simhash, account) -> earliest ts
    for i, account in enumerate(batch.account_ids):
        ts = int(raw["ts"][i])
        features = []
        if raw["payment_fingerprint"][i]:
            features.append("pay:" + raw["payment_fingerprint"][i])
        prefix = ip_prefix(raw["client_ip"][i]) if raw["client_ip"][i] else None
        if prefix:
            features.append(prefix)
        if int(raw["asn"][i]):
            features.append(f"asn:{int(raw['asn'][i])}")
        if raw["user_agent"][i]:
            features.append(ua_feature(raw["user_agent"][i]))
        if raw["tls_fingerprint"][i]:
            features.append("tls:" + raw["tls_fingerprint"][i])
        if raw["http2_fingerprint"][i]:
            features.append(h2_feature(raw["http2_fingerprint"][i]))
        for feature in features:
            _keep_first(out, (feature, account), ts, 0)
        sh = int(raw["prompt_simhash"][i])
        if sh:
            simhashes[(sh, account)] = min(ts, simhashes.get((sh, account), ts))
    t = config.template
    carried = list(zip(carry.simhash.tolist(), carry.accounts.tolist(), carry.ts_ms.tolist(), strict=True))
    pool = list(simhashes) + [(sh, account) for sh, account, _ in carried]
    # A batch simhash is checked against the batch and the carry; a carried one only against the batch.
    checks = [(sh, account, ts, pool) for (sh, account), ts in simhashes.items()]
    checks += [(sh, account, ts, list(simhashes)) for sh, account, ts in carried]
    for sh, account, ts, others in checks:
        for band in range(t.bands):
            value = (sh >> (band * t.band_bits)) & ((1 << t.band_bits) - 1)
            templated = any(
                (other_sh, other_acc) != (sh, account)
                and (other_sh >> (band * t.band_bits)) & ((1 << t.band_bits) - 1) == value
                and (other_sh ^ sh).bit_count() <= t.max_hamming
                for other_sh, other_acc in others
            )
            if templated:
                _keep_first(out, (f"tpl:{band}:{value:04x}", account), ts, sh)
    return out


def as_dict(batch: Columns, config: LinkingConfig, carry: TemplateCarry | None = None) -> Obs:
    obs, _, _ = extract_observations(batch, config.template, carry)
    return {
        (obs.features[f], obs.accounts[a]): (t, s)
        for f, a, t, s in zip(obs.feature_index.tolist(), obs.account_index.tolist(), obs.ts_ms.tolist(),
                              obs.sample.tolist(), strict=True)
    }


def random_batch(rng: np.random.Generator, n: int) -> Columns:
    accounts = [f"org-{i}" for i in rng.integers(0, 12, n)]
    ips = ["203.0.113.5", "203.0.113.77", "198.51.100.9", "2001:db8:1:2::5", "2001:db8:1:ff::9", "", "10.1.2.3"]
    templates = [int(t) | 1 << 63 for t in rng.integers(1, 2**63, 6)]
    simhash = []
    for _ in range(n):
        pick = rng.random()
        if pick < 0.15:
            simhash.append(0)
        elif pick < 0.55:
            simhash.append(int(rng.integers(1, 2**63)) | int(rng.integers(0, 2)) << 63)  # free-form, all 64 bits
        else:
            flips = 0
            for bit in rng.choice(64, int(rng.integers(0, 5)), replace=False).tolist():
                flips |= 1 << bit
            simhash.append(templates[int(rng.integers(0, 6))] ^ flips)
    return make_batch(
        accounts,
        ts=rng.integers(1_000, 1_060, n).tolist(),  # out of order, with ties
        ip=[ips[i] for i in rng.integers(0, len(ips), n)],
        asn=rng.choice([0, 16509, 7922], n).tolist(),
        ua=rng.choice(["", "OpenAI/Python 1.40.0", "curl/8.5.0"], n).tolist(),
        pay=rng.choice(["", "pf_a", "pf_b", "pf_c"], n).tolist(),
        simhash=simhash,
        tls=rng.choice(["", "t13d1516h2_8daaf6152771_b186095e22b6", "t13d1812h1_85036bcba153_b26ce05bbdd6"],
                       n).tolist(),
        h2=rng.choice(["", "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"], n).tolist(),
    )


@pytest.mark.parametrize("seed", range(8))
def test_vectorised_extraction_equals_the_reference(config: LinkingConfig, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Small batches keep every template bucket within the neighbour window: there the check is exact.
    batch = random_batch(rng, 40)
    assert as_dict(batch, config) == reference(batch, config, TemplateCarry.empty())


@pytest.mark.parametrize("seed", range(4))
def test_batch_after_batch_with_the_carry_equals_the_reference(config: LinkingConfig, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    carry = TemplateCarry.empty()
    stream = random_batch(rng, 36)  # one set of templates, cut into three batches
    for i in range(3):  # small, so every template bucket stays within the neighbour window
        rows = slice(12 * i, 12 * (i + 1))
        raw = {name: column[rows] for name, column in stream.raw.items()}
        raw["ts"] = raw["ts"] + 100 * i  # later batches, later events: the carried come first
        batch = Columns(stream.account_ids[rows], raw)
        expected = reference(batch, config, carry)
        obs, _, carry = extract_observations(batch, config.template, carry)
        got = {(obs.features[f], obs.accounts[a]): (t, s) for f, a, t, s in zip(
            obs.feature_index.tolist(), obs.account_index.tolist(), obs.ts_ms.tolist(), obs.sample.tolist(),
            strict=True)}
        assert got == expected


def test_carry_confirms_a_template_spread_over_batches(config: LinkingConfig) -> None:
    base = 0x1234_5678_9ABC_DEF0
    first = make_batch(["org-q"], simhash=[base], ts=[1_000])
    # 3 bits apart, all in band 1: bands 0, 2 and 3 keep their values.
    second = make_batch(["org-q"], simhash=[base ^ 0b1011 << 20], ts=[2_000])
    _, _, carry = extract_observations(first, config.template)
    with_carry = as_dict(second, config, carry)
    assert with_carry == reference(second, config, carry)
    assert {f for f, _ in with_carry if f.startswith("tpl:")} == {"tpl:0:def0", "tpl:2:5678", "tpl:3:1234"}
    assert with_carry[("tpl:0:def0", "org-q")] == (1_000, base)  # the carried call, confirmed now, was first
    assert not [f for f, _ in as_dict(second, config) if f.startswith("tpl:")]  # alone: one prompt, no template


def test_repeating_one_prompt_is_not_a_template_but_two_accounts_sending_it_are(config: LinkingConfig) -> None:
    sh = 0xAAAA_BBBB_CCCC_DDDD
    alone = as_dict(make_batch(["org-a"] * 5, simhash=[sh] * 5), config)
    assert not any(f.startswith("tpl:") for f, _ in alone)
    shared = as_dict(make_batch(["org-a", "org-b"], simhash=[sh, sh]), config)
    assert {a for f, a in shared if f == "tpl:0:dddd"} == {"org-a", "org-b"}


def test_observation_keeps_the_first_event_time_and_its_sample(config: LinkingConfig) -> None:
    base = 0x0F0F_0F0F_0F0F_0F0F
    batch = make_batch(["org-a", "org-a", "org-b"], ts=[5_000, 3_000, 4_000], pay=["pf_x", "pf_x", ""],
                       simhash=[base ^ 1 << 40, base ^ 1 << 50, base])
    obs = as_dict(batch, config)
    assert obs[("pay:pf_x", "org-a")] == (3_000, 0)
    assert obs[("tpl:0:0f0f", "org-a")] == (3_000, base ^ 1 << 50)
    assert obs[("tpl:0:0f0f", "org-b")] == (4_000, base)


def test_account_summary_counts_calls_and_span(config: LinkingConfig) -> None:
    batch = make_batch(["org-a", "org-b", "org-a"], ts=[7, 3, 5])
    _, summary, _ = extract_observations(batch, config.template)
    assert summary.accounts == ["org-a", "org-b"]
    assert summary.calls.tolist() == [2, 1]
    assert summary.first_ts_ms.tolist() == [5, 3]
    assert summary.last_ts_ms.tolist() == [7, 3]


def test_empty_batch(config: LinkingConfig) -> None:
    obs, summary, carry = extract_observations(make_batch([]), config.template)
    assert len(obs) == 0 and summary.accounts == [] and len(carry) == 0


def test_the_carry_yields_only_what_the_batch_confirms(config: LinkingConfig) -> None:
    base = 0x1234_5678_9ABC_DEF0
    # Two accounts' near-duplicates, carried: they confirmed each other in their own batch.
    _, _, carry = extract_observations(make_batch(["org-a", "org-b"], simhash=[base, base ^ 1 << 20], ts=[1, 2]),
                                       config.template)
    unrelated = as_dict(make_batch(["org-c"], simhash=[0x0F0F_0F0F_0F0F_0F0F], ts=[3]), config, carry)
    assert not [f for f, _ in unrelated if f.startswith("tpl:")]
    confirming = as_dict(make_batch(["org-c"], simhash=[base ^ 1 << 40], ts=[3]), config, carry)
    assert {a for f, a in confirming if f == "tpl:0:def0"} == {"org-a", "org-b", "org-c"}


def test_carry_keeps_the_latest_events(config: LinkingConfig) -> None:
    small = config.template.model_copy(update={"carry_events": 3})
    _, _, carry = extract_observations(make_batch(["a", "b", "c", "d"], ts=[4, 1, 3, 2], simhash=[1, 2, 3, 4]),
                                       small)
    assert sorted(carry.accounts.tolist()) == ["a", "c", "d"]
    _, _, carry = extract_observations(make_batch(["e"], ts=[9], simhash=[5]), small, carry)
    assert sorted(carry.accounts.tolist()) == ["a", "c", "e"]


@pytest.mark.parametrize(("ip", "feature"), [
    ("203.0.113.5", "ip24:203.0.113"),
    ("2001:db8:1ef2:7::1", "ip48:2001:db8:1ef2"),
    ("2001:db8::1", "ip48:2001:db8:0"),
    ("", None),
    ("not-an-ip", None),
])
def test_ip_prefix(ip: str, feature: str | None) -> None:
    assert ip_prefix(ip) == feature


def test_feature_partition_is_crc32_so_every_process_agrees() -> None:
    assert feature_partition("pay:pf_a", 4) == zlib.crc32(b"pay:pf_a") % 4
    assert feature_partition("asn:16509", 7) == zlib.crc32(b"asn:16509") % 7


@pytest.mark.parametrize("max_rows", [5_000, 7])
def test_packed_messages_hold_each_partitions_own_features(config: LinkingConfig, max_rows: int) -> None:
    batch = random_batch(np.random.default_rng(3), 200)
    obs, _, _ = extract_observations(batch, config.template)
    packed = pack_observations(obs, 4, "src-1", 9, max_rows=max_rows)
    sizes = [len(decode(v).f) for values in packed.values() for v in values]  # type: ignore[union-attr]
    assert max(sizes) <= max_rows and sum(sizes) == len(obs)
    seen: Obs = {}
    for partition, value in ((p, v) for p, values in packed.items() for v in values):
        msg = decode(value)
        assert msg.src == "src-1" and msg.seq == 9  # type: ignore[union-attr]
        for f, a, ts, sample in zip(msg.f, msg.a, msg.ts, msg.sample, strict=True):  # type: ignore[union-attr]
            feature = msg.features[f]  # type: ignore[union-attr]
            assert feature_partition(feature, 4) == partition
            seen[(feature, msg.accounts[a])] = (ts, sample)  # type: ignore[union-attr]
    assert seen == as_dict(batch, config)


def test_the_decoders_batches_feed_extraction(config: LinkingConfig) -> None:
    from pipeline.decode.json_events import decode_json_batch  # the real decoder, whatever its internals
    from tests.support.events import MINIMAL

    events = [
        {**MINIMAL, "event_id": "e1", "account_id": "org-a", "client_ip": "203.0.113.5", "asn": 64500,
         "user_agent": "curl/8.5.0", "payment_fingerprint": "pf_1", "prompt_simhash": "00000000000000ff",
         "tls_fingerprint": "t13d1812h1_85036bcba153_b26ce05bbdd6", "http2_fingerprint": "1:65536|0|0|m,a,s,p"},
        {**MINIMAL, "event_id": "e2", "account_id": "org-b", "client_ip": "2001:db8:7:1::9",
         "payment_fingerprint": "pf_1", "prompt_simhash": "10000000000000ff"},
    ]
    values = [orjson.dumps(e) for e in events]
    decoded = decode_json_batch(values, [None, None], [0, 0], [0, 1], max_message_bytes=65_536, max_ts_ms=2**62)
    assert len(decoded) == 2 and not decoded.rejects
    features = {f for f, _ in as_dict(decoded, config)}  # type: ignore[arg-type]
    assert {"pay:pf_1", "ip24:203.0.113", "ip48:2001:db8:7", "asn:64500", ua_feature("curl/8.5.0"),
            "tpl:0:00ff", "tls:t13d1812h1_85036bcba153_b26ce05bbdd6", h2_feature("1:65536|0|0|m,a,s,p")} <= features


def test_factorize_gives_first_seen_order_and_survives_a_hash_collision(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.linking import observations

    values = ["b", "a", "b", "c", "a", ""]
    distinct, codes = observations.factorize(values)
    assert distinct == ["b", "a", "c", ""] and codes.tolist() == [0, 1, 0, 2, 1, 3]
    # Every string hashing alike: the check sees the merge and takes the exact path.
    monkeypatch.setattr(observations, "hash", lambda _: 7, raising=False)
    distinct, codes = observations.factorize(values)
    assert distinct == ["b", "a", "c", ""] and codes.tolist() == [0, 1, 0, 2, 1, 3]


def test_pairs_are_named_only_when_asked_and_a_subset_names_only_its_own_features(config: LinkingConfig) -> None:
    batch = random_batch(np.random.default_rng(11), 120)
    pairs, _, _ = extract_pairs(batch, config.template)
    everything = as_dict(batch, config)
    assert len(pairs) == len(everything) and len(set(pairs.key.tolist())) == len(pairs)
    some = pairs.select(np.arange(len(pairs)) % 3 == 0)
    obs = some.named(batch.raw, config.template.band_bits)
    named = {(obs.features[f], obs.accounts[a]): (t, s) for f, a, t, s in zip(
        obs.feature_index.tolist(), obs.account_index.tolist(), obs.ts_ms.tolist(), obs.sample.tolist(), strict=True)}
    assert len(named) == len(some) and named.items() <= everything.items()
    assert len(obs.features) == len({f for f, _ in named}) and len(obs.accounts) == len({a for _, a in named})


def test_equal_values_of_two_kinds_are_two_features(config: LinkingConfig) -> None:
    # A card fingerprint that is the text of the IPv4 group, an ASN and a band value of one number.
    batch = make_batch(["a", "b"], ip=["10.1.2.3", "10.9.9.9"], pay=["10.1.2", "10.1.2"], asn=[5, 5],
                       simhash=[5, 5], ts=[1, 2])
    features = {f for f, _ in as_dict(batch, config)}
    assert {"pay:10.1.2", "ip24:10.1.2", "ip24:10.9.9", "asn:5", "tpl:0:0005"} <= features

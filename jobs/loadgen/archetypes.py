"""Behaviour models of API accounts: twelve benign archetypes and thirteen extraction attacks.

An archetype is pure data: how often an account calls (rate, daily and weekly shape,
inter-arrival regularity, rests), what it asks (prompt repetition, templates, topics,
reasoning), how it samples (temperature, n, logprobs, logit bias) and where it calls
from (networks, IP rotation, keys, user agents, payment). ``population`` turns these
into concrete accounts; ``behaviour`` draws their events. Choices are
``((value, weight), ...)`` tuples; a value of ``None`` means the field is left out of
the event, as many clients do.

What each archetype does, the released model (``NEW_MODEL``, ``Pivot``), the reseller
(``Reseller``), the groups tied by time (``Waves``, ``Cron``) and the absolute-rate fleet
(``calls_per_min``, ``one_fleet``): README, "The demo's traffic".
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from jobs.loadgen.texts import LANGUAGES

Choice = tuple[tuple[float | None, float], ...]

TOPICS: Final = (
    "chat", "writing", "code", "math", "science", "reasoning", "legal", "medical", "finance",
    "summarization", "classification", "translation", "education", "history", "data_extraction",
)  # fmt: skip
ENDPOINTS: Final = ("/v1/chat/completions", "/v1/responses", "/v1/completions", "/v1/embeddings")
MODELS: Final = ("frontier-large", "frontier-mini", "frontier-reasoning", "embed-small", "frontier-2")
CHAT, RESPONSES, COMPLETIONS, EMBED = range(len(ENDPOINTS))  # indices into ENDPOINTS
LARGE, MINI, REASONING, EMBED_SMALL, NEW = range(len(MODELS))  # indices into MODELS
NEW_MODEL: Final = MODELS[NEW]  # released partway through the scenario (ScenarioConfig.release_fraction)
REASONING_MODELS: Final = (REASONING, NEW)  # models that spend hidden reasoning tokens

# Local-time hourly activity shapes (any scale; normalised per account).
HUMAN: Final = (0.35, 0.2, 0.12, 0.08, 0.07, 0.08, 0.15, 0.35, 0.6, 0.8, 0.9, 1.0,
                1.0, 1.0, 1.0, 1.0, 1.0, 1.05, 1.1, 1.2, 1.25, 1.15, 0.9, 0.6)  # fmt: skip
OFFICE: Final = (0.05, 0.04, 0.03, 0.03, 0.03, 0.05, 0.1, 0.3, 0.8, 1.3, 1.5, 1.5,
                 1.2, 1.4, 1.5, 1.5, 1.4, 1.1, 0.6, 0.3, 0.2, 0.15, 0.1, 0.07)  # fmt: skip
EVENING: Final = (0.5, 0.3, 0.1, 0.03, 0.02, 0.02, 0.05, 0.15, 0.2, 0.25, 0.3, 0.35,
                  0.4, 0.35, 0.3, 0.35, 0.45, 0.6, 0.9, 1.3, 1.6, 1.7, 1.4, 0.9)  # fmt: skip
NIGHTLY: Final = (1.8, 2.0, 2.0, 2.0, 1.8, 1.2, 0.6, 0.4, 0.4, 0.5, 0.5, 0.5,
                  0.5, 0.5, 0.5, 0.5, 0.5, 0.4, 0.4, 0.4, 0.5, 0.6, 0.9, 1.4)  # fmt: skip
MILD: Final = (0.8, 0.75, 0.7, 0.7, 0.7, 0.75, 0.8, 0.9, 1.0, 1.1, 1.15, 1.2,
               1.2, 1.2, 1.2, 1.15, 1.1, 1.1, 1.1, 1.1, 1.05, 1.0, 0.95, 0.85)  # fmt: skip
FLAT: Final = (1.0,) * 24
# The most calls a quiet (``calls_per_min``) account makes in its busiest hour, on average: well under the
# 30 calls an hour at which the scoring's volume gate (pipeline/scoring/scoring.v1.json) counts an account's
# signals in full. An account's rate is lowered to keep its peak hour there, whatever its diurnal curve.
QUIET_PEAK_PER_HOUR: Final = 18.0

SDK_AGENTS: Final = ("OpenAI/Python 1.40.0", "OpenAI/NodeJS 4.52.0", "python-httpx/0.27.0")
SCRIPT_AGENTS: Final = (
    "python-requests/2.32.3", "python-requests/2.31.0", "aiohttp/3.9.5", "Go-http-client/1.1",
    "curl/8.5.0", "axios/1.7.2", "okhttp/4.12.0", "Java-http-client/17.0.9", "node-fetch/1.0",
    "OpenAI/Python 1.35.7", "OpenAI/Python 1.40.0", "python-httpx/0.27.0", "Ruby", "PostmanRuntime/7.39.0",
)  # fmt: skip


def _topics(**weights: float) -> MappingProxyType[str, float]:
    unknown = set(weights) - set(TOPICS)
    if unknown:
        raise ValueError(f"unknown topics {sorted(unknown)}")
    return MappingProxyType(weights)


BROAD_TOPICS: Final = _topics(
    chat=0.2, writing=0.12, code=0.14, math=0.09, science=0.08, reasoning=0.05, legal=0.04, medical=0.04,
    finance=0.05, summarization=0.05, translation=0.04, education=0.05, history=0.03, data_extraction=0.02,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Timing:
    hourly: tuple[float, ...]  # 24 local-time multipliers
    regularity: float  # gamma shape of gaps: <1 bursty, 1 Poisson, 30+ metronome
    weekend: float = 1.0  # Saturday/Sunday multiplier
    rest_prob: float = 0.0  # chance a gap is a rest between sessions (humans)
    rest_scale: float = 0.0  # mean rest, in mean in-session gaps
    batch: tuple[int, int] | None = None  # rest after every N events (jobs, sweeps)
    duty: float = 1.0  # with batches: share of time spent working
    tz: tuple[int, ...] = (0,)  # UTC offsets accounts are drawn from


@dataclass(frozen=True, slots=True)
class Prompts:
    repeat_share: float  # calls reusing a prompt from the account's pool
    pool: tuple[int, int]  # pool size range
    pool_skew: float = 1.0  # Zipf exponent of pool popularity
    sweep: bool = False  # walk the pool in order, every call (benchmark runs)
    templates: tuple[int, int] = (0, 0)  # template bases per account
    template_share: float = 0.0  # fresh prompts built from a template
    flip_bits: float = 0.0  # mean simhash bits a templated prompt differs from its base


@dataclass(frozen=True, slots=True)
class Content:
    topics: MappingProxyType[str, float]
    reasoning_share: float  # prompts that ask for step-by-step reasoning
    prompt_tokens: tuple[float, float]  # lognormal (median, sigma)
    completion_tokens: tuple[float, float]
    reasoning_tokens: tuple[float, float]  # on the reasoning model, when reasoning is elicited
    cot_boost: float = 2.0  # completion multiplier when reasoning is elicited (visible chain of thought)
    topics_per_account: int | None = None  # narrow focus: this many topics per account
    endpoints: Choice = ((CHAT, 1.0),)
    models: Choice = ((LARGE, 0.5), (MINI, 0.5))
    # Each account writes in one of these languages (jobs/loadgen/texts.py): its events carry
    # prompt_text and no topic or elicits_reasoning, which the pipeline derives. Empty: English,
    # classified by the gateway (topic and elicits_reasoning sent, no text).
    languages: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pivot:
    """Moving traffic to NEW_MODEL after its release; each account draws its own lag and share."""

    share: tuple[float, float]  # of the account's generation calls on NEW_MODEL once it has moved
    lag_s: tuple[int, int]  # seconds from the release to the move
    trial: float = 0.05  # share of calls trying NEW_MODEL between the release and the move


@dataclass(frozen=True, slots=True)
class Sampling:
    temperature: Choice = ((None, 1.0),)
    temperature_sweep: tuple[float, ...] = ()  # cycled call after call, overrides temperature
    top_p: Choice = ((None, 1.0),)
    n: Choice = ((1, 1.0),)
    max_tokens: Choice = ((None, 1.0),)
    logprobs: float = 0.0
    top_logprobs: Choice = ((None, 1.0),)
    logit_bias: float = 0.0
    logit_bias_range: tuple[int, int] = (1, 1)
    stream: float = 0.0


@dataclass(frozen=True, slots=True)
class Network:
    types: MappingProxyType[str, float]  # network types the account's prefixes come from
    prefixes: tuple[int, int]  # /24s per account
    ips: tuple[int, int]  # addresses per account
    switch: float = 1.0  # chance a call picks an address afresh (1: every call, tiny: sticky home IP)
    skew: float = 0.0  # Zipf exponent over the account's addresses
    ipv6_share: float = 0.0
    unknown_share: float = 0.01  # addresses missing from the gateway's IP database
    keys: tuple[int, int] = (1, 1)
    agents: tuple[str, ...] = SDK_AGENTS
    agents_per_account: tuple[int, int] = (1, 1)
    payment_missing: float = 0.0  # invoiced accounts have no card fingerprint
    browser: float = 0.0  # share of accounts calling from a browser (a playground user): UA and handshake agree
    poses_as_browser: float = 0.0  # share of accounts whose library sends a browser's user agent


@dataclass(frozen=True, slots=True)
class Reseller:
    """A third-party router (reseller, proxy) of our API: its customers each get an account, its
    infrastructure sends every call. Archetypes naming one reseller share it in a scenario."""

    name: str
    # The router's egress, drawn once: ``prefixes`` /24s, all of one provider of ``types`` (one ASN),
    # ``ips`` exit addresses every account's calls are spread over, one user agent of ``agents``
    # (sent through the router's own TLS and HTTP/2 stack).
    egress: Network
    card_share: float  # accounts billed to the router's card (the rest are invoiced: no card)


@dataclass(frozen=True, slots=True)
class Waves:
    """A campaign's rate over time, shared by every member of a fleet (drawn once per fleet, no time zone):
    active blocks, each at its own intensity, separated by lulls."""

    active_min: tuple[int, int]  # minutes per active block
    lull_min: tuple[int, int]  # minutes per lull
    intensity_sigma: float  # lognormal spread of the blocks' intensities
    lull_level: float  # rate in a lull, relative to a typical active block


@dataclass(frozen=True, slots=True)
class Cron:
    """One company's accounts run by one scheduler: grouped into companies of ``accounts`` accounts, each
    company's accounts firing together every ``period_min`` minutes (at a minute offset of its own) and
    calling for ``burst_s`` seconds per run. Drawn once per company."""

    accounts: tuple[int, int]  # accounts per company
    period_min: tuple[int, int]
    burst_s: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Archetype:
    name: str
    is_attack: bool
    summary: str
    volume: float  # mean share of traffic per account, relative to other archetypes
    timing: Timing
    prompts: Prompts
    content: Content
    sampling: Sampling
    network: Network
    status: Choice = ((200, 1.0),)
    volume_sigma: float = 0.5  # lognormal spread of volume across accounts
    fleet: bool = False  # accounts are grouped into fleets sharing infrastructure
    # Fleet members bring their own network, card and user agent: only the templates, topics and
    # client stack (TLS and HTTP/2 fingerprints) are the fleet's.
    fleet_own_infra: bool = False
    pivot: Pivot | None = None  # moves to NEW_MODEL after its release
    # Calls through a reseller: of ``network`` only the keys, switch and skew are the account's own.
    reseller: Reseller | None = None
    # A fleet whose members share only this campaign clock: their own prompts and client stacks too.
    campaign: Waves | None = None
    # Accounts grouped into companies on one schedule, each sharing its company's card, network, user agent
    # and templates (a label company_id, not fleet_id); timing: the cron's, not ``timing.hourly``.
    cron: Cron | None = None
    # Calls a minute per account at its mean activity, drawn log-uniformly between the bounds per account:
    # an absolute rate (``volume`` is then 0), capped so no hour averages more than QUIET_PEAK_PER_HOUR.
    calls_per_min: tuple[float, float] | None = None
    # Every account of the archetype in a scenario is one fleet (not fleets of ScenarioConfig.fleet_size).
    one_fleet: bool = False


# A campaign and the early adopters move to a new model equally fast (10 to 90 minutes after
# its release): the timing of the move is not what tells them apart.
PIVOT_LAG_S: Final = (600, 5400)


def _net(**weights: float) -> MappingProxyType[str, float]:
    return MappingProxyType(weights)


# One router in front of many accounts: load-balanced exits on a handful of cloud /24s, a gateway
# user agent, and its card on nine accounts in ten.
ROUTER: Final = Reseller(
    name="router",
    egress=Network(types=_net(hosting=1.0), prefixes=(2, 4), ips=(8, 24), unknown_share=0.0,
                   agents=("llm-relay/2.8.1 undici/6.19.2", "routerd/4.12.0 (+https://router.example/bot)")),
    card_share=0.9,
)
# What a reseller account owns itself: its keys (the egress is the router's).
_ROUTED: Final = Network(types=_net(hosting=1.0), prefixes=(1, 1), ips=(1, 1), keys=(1, 2))


# fmt: off
_ARCHETYPES: tuple[Archetype, ...] = (
    # ---------------------------------------------------------------- benign
    Archetype(
        name="chat_app",
        is_attack=False,
        summary="consumer chat product, many end users behind one key: varied prompts under a shared system "
        "prompt, human diurnal timing, streaming, RAG embeddings, a little reasoning",
        volume=3.0,
        volume_sigma=0.8,
        timing=Timing(hourly=HUMAN, regularity=0.7, tz=(-8, -5, 0, 1, 2, 8)),
        prompts=Prompts(repeat_share=0.06, pool=(50, 200), pool_skew=1.1, templates=(1, 2),
                        template_share=0.6, flip_bits=11),
        content=Content(topics=BROAD_TOPICS, reasoning_share=0.08, prompt_tokens=(350, 0.9),
                        completion_tokens=(280, 0.8), reasoning_tokens=(1200, 0.8), cot_boost=2.5,
                        endpoints=((CHAT, 0.85), (RESPONSES, 0.03), (EMBED, 0.12)),
                        models=((LARGE, 0.45), (MINI, 0.5), (REASONING, 0.05))),
        sampling=Sampling(temperature=((None, 0.3), (0.7, 0.4), (1.0, 0.3)),
                          top_p=((None, 0.85), (1.0, 0.1), (0.9, 0.05)),
                          max_tokens=((None, 0.5), (1024, 0.3), (2048, 0.2)), stream=0.85),
        network=Network(types=_net(hosting=1.0), prefixes=(1, 2), ips=(2, 6), skew=0.3, keys=(1, 3),
                        agents=("OpenAI/NodeJS 4.52.0", "OpenAI/Python 1.40.0", "node-fetch/1.0"),
                        payment_missing=0.1),
        status=((200, 0.975), (400, 0.01), (429, 0.008), (500, 0.004), (503, 0.003)),
    ),
    Archetype(
        name="batch_summarizer",
        is_attack=False,
        summary="document-summarisation backend: heavy legitimate volume in machine-regular nightly batches, "
        "unique long inputs, short outputs, cloud IPs",
        volume=8.0,
        timing=Timing(hourly=NIGHTLY, regularity=30, batch=(2000, 20000), duty=0.6, tz=(-5, 0, 1)),
        prompts=Prompts(repeat_share=0.01, pool=(10, 50), templates=(1, 1), template_share=0.3,
                        flip_bits=18),
        content=Content(topics=_topics(summarization=0.6, legal=0.1, finance=0.1, medical=0.1, science=0.1),
                        reasoning_share=0.01, prompt_tokens=(3500, 0.6), completion_tokens=(180, 0.4),
                        reasoning_tokens=(400, 0.5), cot_boost=1.5,
                        endpoints=((CHAT, 0.7), (RESPONSES, 0.1), (EMBED, 0.2)),
                        models=((MINI, 0.8), (LARGE, 0.2))),
        sampling=Sampling(temperature=((0.2, 0.5), (None, 0.3), (0.0, 0.2)),
                          max_tokens=((300, 0.6), (512, 0.4))),
        network=Network(types=_net(hosting=1.0), prefixes=(1, 1), ips=(1, 4), keys=(1, 2),
                        agents=("OpenAI/Python 1.40.0", "python-httpx/0.27.0"), payment_missing=0.3),
        status=((200, 0.97), (429, 0.02), (500, 0.005), (503, 0.005)),
    ),
    Archetype(
        name="classifier_pipeline",
        is_attack=False,
        summary="moderation/tagging pipeline: templated near-duplicate prompts, 1-16 token outputs, "
        "temperature 0, logprobs and logit bias over label tokens for calibration",
        volume=4.0,
        volume_sigma=0.7,
        timing=Timing(hourly=HUMAN, regularity=3.0, weekend=0.8, tz=(-8, -5, 0, 1)),
        prompts=Prompts(repeat_share=0.15, pool=(200, 2000), templates=(1, 3), template_share=1.0,
                        flip_bits=2.5),
        content=Content(topics=_topics(classification=0.8, data_extraction=0.2), reasoning_share=0.0,
                        prompt_tokens=(220, 0.4), completion_tokens=(2, 0.5), reasoning_tokens=(200, 0.5),
                        cot_boost=1.0, endpoints=((CHAT, 0.9), (COMPLETIONS, 0.1)),
                        models=((MINI, 0.9), (LARGE, 0.1))),
        sampling=Sampling(temperature=((0.0, 0.95), (None, 0.05)),
                          max_tokens=((1, 0.4), (5, 0.4), (16, 0.2)), logprobs=0.35,
                          top_logprobs=((1, 0.3), (2, 0.2), (5, 0.5)), logit_bias=0.3,
                          logit_bias_range=(2, 12)),
        network=Network(types=_net(hosting=0.8, business=0.2), prefixes=(1, 2), ips=(1, 4), keys=(1, 2),
                        agents=("OpenAI/Python 1.40.0", "python-requests/2.32.3")),
        status=((200, 0.985), (429, 0.01), (500, 0.005)),
    ),
    Archetype(
        name="eval_harness",
        is_attack=False,
        summary="model-evaluation team: bursty benchmark sweeps over a fixed prompt set repeated run after "
        "run, temperature 0, reasoning benchmarks, logprob scoring and pass@k (n>1)",
        volume=2.0,
        volume_sigma=0.6,
        timing=Timing(hourly=OFFICE, regularity=4.0, weekend=0.3, duty=0.2, tz=(-8, -5, 0, 1)),
        prompts=Prompts(repeat_share=1.0, pool=(150, 1500), sweep=True, templates=(2, 6),
                        template_share=0.7, flip_bits=6),
        content=Content(topics=_topics(math=0.25, reasoning=0.2, code=0.2, science=0.15, legal=0.05,
                                       medical=0.05, history=0.1),
                        reasoning_share=0.25, prompt_tokens=(600, 0.7), completion_tokens=(250, 1.0),
                        reasoning_tokens=(2000, 0.7), cot_boost=3.0,
                        endpoints=((CHAT, 0.8), (COMPLETIONS, 0.2)),
                        models=((LARGE, 0.5), (REASONING, 0.3), (MINI, 0.2))),
        sampling=Sampling(temperature=((0.0, 0.85), (None, 0.05), (0.8, 0.1)),
                          n=((1, 0.85), (5, 0.1), (10, 0.05)),
                          max_tokens=((None, 0.2), (1024, 0.5), (4096, 0.3)), logprobs=0.2,
                          top_logprobs=((5, 0.6), (1, 0.2), (10, 0.2))),
        network=Network(types=_net(business=0.5, hosting=0.5), prefixes=(1, 1), ips=(1, 3), keys=(1, 3),
                        agents=("lm-eval/0.4.3 python-httpx/0.27.0", "inspect_ai/0.3.18",
                                "python-httpx/0.27.0")),
        status=((200, 0.95), (429, 0.035), (500, 0.01), (503, 0.005)),
    ),
    Archetype(
        name="coding_assistant",
        is_attack=False,
        summary="IDE plugin of an engineering org: calls straight from developers' machines (many "
        "residential/business/VPN IPs and countries), code topic, streaming, low temperature",
        volume=5.0,
        volume_sigma=0.6,
        timing=Timing(hourly=OFFICE, regularity=0.6, weekend=0.2, tz=(-8, -5, 0, 1, 5, 8)),
        prompts=Prompts(repeat_share=0.02, pool=(20, 100), templates=(1, 2), template_share=0.8,
                        flip_bits=14),
        content=Content(topics=_topics(code=0.9, writing=0.05, chat=0.05), reasoning_share=0.05,
                        prompt_tokens=(1800, 0.8), completion_tokens=(150, 1.0), reasoning_tokens=(800, 0.6),
                        endpoints=((CHAT, 0.85), (COMPLETIONS, 0.1), (EMBED, 0.05)),
                        models=((LARGE, 0.3), (MINI, 0.7))),
        sampling=Sampling(temperature=((0.2, 0.6), (0.0, 0.2), (None, 0.2)),
                          max_tokens=((256, 0.5), (1024, 0.3), (None, 0.2)), stream=0.95),
        network=Network(types=_net(residential=0.45, business=0.4, mobile=0.05, vpn=0.1), prefixes=(10, 60),
                        ips=(20, 150), skew=0.8, ipv6_share=0.25, keys=(1, 4),
                        agents=("vscode-distill-ext/1.14.2 node/20.11.1",
                                "jetbrains-distill/0.9.1 java/17.0.10"),
                        agents_per_account=(1, 2)),
        status=((200, 0.97), (400, 0.01), (408, 0.005), (429, 0.01), (500, 0.005)),
    ),
    Archetype(
        name="hobbyist",
        is_attack=False,
        summary="individual developer: low volume from a home connection, human sessions with long rests, "
        "varied topics, more client errors",
        volume=0.05,
        volume_sigma=1.0,
        timing=Timing(hourly=EVENING, regularity=0.8, weekend=1.5, rest_prob=0.06, rest_scale=30,
                      tz=(-8, -6, -5, -3, 0, 1, 2, 3, 5, 8, 9)),
        prompts=Prompts(repeat_share=0.1, pool=(5, 30), templates=(0, 1), template_share=0.3, flip_bits=8),
        content=Content(topics=BROAD_TOPICS, reasoning_share=0.12, prompt_tokens=(200, 1.0),
                        completion_tokens=(350, 0.9), reasoning_tokens=(1500, 0.8), cot_boost=2.5,
                        endpoints=((CHAT, 0.9), (RESPONSES, 0.1)),
                        models=((MINI, 0.5), (LARGE, 0.35), (REASONING, 0.15))),
        sampling=Sampling(temperature=((None, 0.5), (0.7, 0.3), (1.0, 0.2)),
                          max_tokens=((None, 0.7), (500, 0.3)), logprobs=0.02, top_logprobs=((5, 1.0),),
                          stream=0.5),
        network=Network(types=_net(residential=0.85, mobile=0.1, vpn=0.05), prefixes=(1, 2), ips=(1, 3),
                        switch=0.002, ipv6_share=0.3, keys=(1, 2),
                        agents=("curl/8.5.0", "python-requests/2.31.0", "OpenAI/Python 1.35.7"),
                        agents_per_account=(1, 2), browser=0.2),
        status=((200, 0.93), (400, 0.04), (401, 0.01), (429, 0.015), (500, 0.005)),
    ),
    Archetype(
        name="label_calibrator",
        is_attack=False,
        summary="calibrated classifier (hard negative for logit_stealer): every call biases its 2-10 label "
        "tokens, max_tokens 1, logprobs, temperature 0, templated prompts, machine-paced",
        volume=3.0,
        volume_sigma=0.5,
        timing=Timing(hourly=MILD, regularity=20.0, tz=(-5, 0, 1)),
        prompts=Prompts(repeat_share=0.1, pool=(100, 1000), templates=(1, 2), template_share=1.0,
                        flip_bits=2.5),
        content=Content(topics=_topics(classification=0.9, data_extraction=0.1), reasoning_share=0.0,
                        prompt_tokens=(180, 0.4), completion_tokens=(1, 0.1), reasoning_tokens=(100, 0.5),
                        cot_boost=1.0, endpoints=((CHAT, 0.8), (COMPLETIONS, 0.2)),
                        models=((MINI, 0.8), (LARGE, 0.2))),
        sampling=Sampling(temperature=((0.0, 0.9), (None, 0.1)), max_tokens=((1, 0.9), (2, 0.1)), logprobs=1.0,
                          top_logprobs=((5, 0.6), (2, 0.2), (10, 0.2)), logit_bias=1.0, logit_bias_range=(2, 10)),
        network=Network(types=_net(hosting=1.0), prefixes=(1, 1), ips=(1, 3), keys=(1, 2),
                        agents=("OpenAI/Python 1.40.0", "python-httpx/0.27.0")),
        status=((200, 0.99), (429, 0.005), (500, 0.005)),
    ),
    Archetype(
        name="nightly_summarizer",
        is_attack=False,
        summary="nightly summarisation job (hard negative for template sweeps): one template, unique long "
        "inputs, short outputs, machine-regular batches, cloud IPs",
        volume=5.0,
        timing=Timing(hourly=NIGHTLY, regularity=30, batch=(2000, 20000), duty=0.6, tz=(-5, 0, 1)),
        prompts=Prompts(repeat_share=0.0, pool=(1, 5), templates=(1, 1), template_share=1.0, flip_bits=3.5),
        content=Content(topics=_topics(summarization=0.7, legal=0.1, finance=0.1, medical=0.1),
                        reasoning_share=0.0, prompt_tokens=(4000, 0.5), completion_tokens=(220, 0.4),
                        reasoning_tokens=(300, 0.5), cot_boost=1.0, models=((MINI, 0.8), (LARGE, 0.2))),
        sampling=Sampling(temperature=((0.2, 0.6), (0.0, 0.4)), max_tokens=((300, 0.5), (512, 0.5))),
        network=Network(types=_net(hosting=1.0), prefixes=(1, 1), ips=(1, 2), keys=(1, 1),
                        agents=("OpenAI/Python 1.40.0",), payment_missing=0.5),
        status=((200, 0.98), (429, 0.015), (500, 0.005)),
    ),
    Archetype(
        name="early_adopter",
        is_attack=False,
        summary="chat and coding app that moves most of its traffic to the newly released model within hours "
        "(hard negative for model_pivot): varied prompts, human timing, streaming, a little reasoning",
        volume=2.5,
        volume_sigma=0.6,
        timing=Timing(hourly=HUMAN, regularity=0.7, weekend=0.7, tz=(-8, -5, 0, 1, 8)),
        prompts=Prompts(repeat_share=0.05, pool=(30, 150), pool_skew=1.1, templates=(1, 2), template_share=0.5,
                        flip_bits=11),
        content=Content(topics=_topics(chat=0.3, code=0.35, writing=0.15, math=0.05, summarization=0.1,
                                       data_extraction=0.05),
                        reasoning_share=0.1, prompt_tokens=(450, 0.9), completion_tokens=(320, 0.8),
                        reasoning_tokens=(1000, 0.8), cot_boost=2.5,
                        endpoints=((CHAT, 0.8), (RESPONSES, 0.1), (EMBED, 0.1)),
                        models=((LARGE, 0.55), (MINI, 0.4), (REASONING, 0.05))),
        sampling=Sampling(temperature=((None, 0.4), (0.2, 0.3), (0.7, 0.3)),
                          max_tokens=((None, 0.5), (2048, 0.3), (4096, 0.2)), stream=0.8),
        network=Network(types=_net(hosting=1.0), prefixes=(1, 2), ips=(2, 6), skew=0.3, keys=(1, 3),
                        agents=("OpenAI/NodeJS 4.52.0", "OpenAI/Python 1.40.0"), payment_missing=0.1),
        status=((200, 0.975), (400, 0.01), (429, 0.01), (500, 0.005)),
        pivot=Pivot(share=(0.5, 0.85), lag_s=PIVOT_LAG_S),
    ),
    Archetype(
        name="non_english_app",
        is_attack=False,
        summary="consumer chat app in one language other than English (hard negative for multilingual sweeps): "
        "varied everyday prompts, short questions with long answers, human timing, streaming; prompt text sent",
        volume=1.5,
        volume_sigma=0.6,
        timing=Timing(hourly=HUMAN, regularity=0.7, tz=(-3, 1, 2, 3, 8, 9)),
        prompts=Prompts(repeat_share=0.05, pool=(30, 150), pool_skew=1.1, templates=(1, 2), template_share=0.5,
                        flip_bits=11),
        content=Content(topics=_topics(chat=0.35, writing=0.15, education=0.1, translation=0.1, code=0.06,
                                       medical=0.06, finance=0.06, legal=0.04, history=0.08),
                        reasoning_share=0.08, prompt_tokens=(120, 0.9), completion_tokens=(900, 0.7),
                        reasoning_tokens=(1200, 0.8), cot_boost=1.5,
                        endpoints=((CHAT, 0.95), (RESPONSES, 0.05)),
                        models=((LARGE, 0.5), (MINI, 0.45), (REASONING, 0.05)), languages=LANGUAGES),
        sampling=Sampling(temperature=((None, 0.4), (0.7, 0.4), (1.0, 0.2)),
                          max_tokens=((None, 0.6), (2048, 0.4)), stream=0.85),
        network=Network(types=_net(hosting=1.0), prefixes=(1, 2), ips=(2, 6), skew=0.3, keys=(1, 2),
                        agents=("OpenAI/NodeJS 4.52.0", "OpenAI/Python 1.40.0", "node-fetch/1.0"),
                        payment_missing=0.1),
        status=((200, 0.975), (400, 0.01), (429, 0.008), (500, 0.007)),
    ),
    Archetype(
        name="reseller_customer",
        is_attack=False,
        summary="customer of a third-party router: own account, but calls leave from the router's cloud egress "
        "through its HTTP client on its card; low-rate chat, coding and summarisation, human timing worldwide",
        volume=0.1,
        volume_sigma=0.8,
        timing=Timing(hourly=HUMAN, regularity=0.7, weekend=0.8, rest_prob=0.03, rest_scale=20,
                      tz=(-8, -5, -3, 0, 1, 2, 3, 5, 8, 9)),
        prompts=Prompts(repeat_share=0.05, pool=(20, 100), pool_skew=1.1, templates=(1, 2), template_share=0.5,
                        flip_bits=11),
        content=Content(topics=_topics(chat=0.3, code=0.25, summarization=0.15, writing=0.12, translation=0.05,
                                       data_extraction=0.05, education=0.05, finance=0.03),
                        topics_per_account=3, reasoning_share=0.08, prompt_tokens=(600, 1.0),
                        completion_tokens=(280, 0.8), reasoning_tokens=(1000, 0.8), cot_boost=2.0,
                        endpoints=((CHAT, 0.9), (RESPONSES, 0.1)),
                        models=((LARGE, 0.4), (MINI, 0.5), (REASONING, 0.1))),
        sampling=Sampling(temperature=((None, 0.4), (0.2, 0.2), (0.7, 0.3), (1.0, 0.1)),
                          max_tokens=((None, 0.5), (1024, 0.3), (4096, 0.2)), stream=0.7),
        network=_ROUTED,
        status=((200, 0.97), (400, 0.01), (429, 0.01), (500, 0.005), (503, 0.005)),
        reseller=ROUTER,
    ),
    Archetype(
        name="cron_company",
        is_attack=False,
        summary="one company's accounts run by one scheduler (hard negative for synchronised_fleet): one card, the "
        "company's cloud egress and SDK, shared templates, every account firing at the same minutes in lock-step "
        "bursts; classification, summarisation and extraction of its own data, short outputs, no reasoning",
        volume=0.6,
        volume_sigma=0.5,
        timing=Timing(hourly=FLAT, regularity=8.0),
        prompts=Prompts(repeat_share=0.03, pool=(50, 300), templates=(2, 4), template_share=0.9, flip_bits=4),
        content=Content(topics=_topics(classification=0.4, summarization=0.35, data_extraction=0.25),
                        topics_per_account=2, reasoning_share=0.0, prompt_tokens=(1200, 0.6),
                        completion_tokens=(60, 0.6), reasoning_tokens=(200, 0.5), cot_boost=1.0,
                        models=((MINI, 0.85), (LARGE, 0.15))),
        sampling=Sampling(temperature=((0.0, 0.7), (0.2, 0.3)), max_tokens=((128, 0.5), (256, 0.3), (512, 0.2))),
        network=Network(types=_net(hosting=1.0), prefixes=(1, 2), ips=(1, 3), keys=(1, 2),
                        agents=("OpenAI/Python 1.40.0", "python-httpx/0.27.0", "OpenAI/NodeJS 4.52.0")),
        status=((200, 0.98), (429, 0.015), (500, 0.005)),
        cron=Cron(accounts=(5, 15), period_min=(5, 15), burst_s=(30, 120)),
    ),
    # ---------------------------------------------------------------- attacks
    Archetype(
        name="reasoning_harvester",
        is_attack=True,
        summary="harvests chain-of-thought traces: mass diverse prompts demanding step-by-step reasoning, "
        "long completions, heavy reasoning tokens, a few cloud IPs, around the clock",
        volume=4.0,
        timing=Timing(hourly=MILD, regularity=1.5, tz=(-5, 0, 3, 8)),
        prompts=Prompts(repeat_share=0.01, pool=(10, 50), templates=(2, 4), template_share=0.35,
                        flip_bits=12),
        content=Content(topics=_topics(math=0.3, science=0.2, reasoning=0.2, code=0.15, finance=0.05,
                                       legal=0.05, medical=0.05),
                        reasoning_share=0.7, prompt_tokens=(220, 0.8), completion_tokens=(700, 0.6),
                        reasoning_tokens=(3500, 0.6), cot_boost=3.0,
                        endpoints=((CHAT, 0.7), (RESPONSES, 0.3)), models=((REASONING, 0.5), (LARGE, 0.5))),
        sampling=Sampling(temperature=((0.7, 0.3), (1.0, 0.3), (None, 0.2), (0.6, 0.2)),
                          n=((1, 0.9), (2, 0.1)), max_tokens=((None, 0.3), (4096, 0.3), (8192, 0.4)),
                          stream=0.3),
        network=Network(types=_net(hosting=1.0), prefixes=(1, 2), ips=(2, 8), keys=(2, 5),
                        agents=("OpenAI/Python 1.40.0", "python-httpx/0.27.0")),
        status=((200, 0.96), (429, 0.03), (500, 0.01)),
    ),
    Archetype(
        name="capability_sweeper",
        is_attack=True,
        summary="systematic sweep of one capability area: thousands of distinct prompts instantiated from a "
        "few templates (shared simhash bits), one narrow topic, mostly temperature 0, steady batches",
        volume=3.0,
        timing=Timing(hourly=MILD, regularity=6.0, batch=(500, 3000), duty=0.7, tz=(-5, 0, 3, 8)),
        prompts=Prompts(repeat_share=0.005, pool=(5, 20), templates=(2, 5), template_share=0.95,
                        flip_bits=3.5),
        content=Content(topics=BROAD_TOPICS, topics_per_account=1, reasoning_share=0.3,
                        prompt_tokens=(300, 0.4), completion_tokens=(450, 0.6), reasoning_tokens=(1500, 0.6),
                        endpoints=((CHAT, 0.8), (RESPONSES, 0.2)), models=((LARGE, 0.7), (REASONING, 0.3))),
        sampling=Sampling(temperature=((0.0, 0.6), (0.2, 0.2), (None, 0.2)),
                          max_tokens=((2048, 0.7), (None, 0.3)), logprobs=0.05, top_logprobs=((5, 1.0),)),
        network=Network(types=_net(hosting=1.0), prefixes=(1, 1), ips=(1, 3), keys=(1, 2),
                        agents=("python-httpx/0.27.0", "aiohttp/3.9.5")),
        status=((200, 0.97), (429, 0.025), (500, 0.005)),
    ),
    Archetype(
        name="hydra_fleet",
        is_attack=True,
        summary="coordinated fleet of small accounts, each quiet and under limits, sharing /24 prefixes, "
        "ASNs, payment fingerprints, a user agent and prompt templates; reasoning-heavy",
        volume=0.3,
        volume_sigma=0.3,
        fleet=True,
        timing=Timing(hourly=OFFICE, regularity=2.5, weekend=0.8, tz=(-5, 0, 8)),
        prompts=Prompts(repeat_share=0.02, pool=(5, 20), templates=(3, 6), template_share=0.8, flip_bits=5),
        content=Content(topics=_topics(math=0.3, code=0.3, reasoning=0.2, science=0.2), topics_per_account=2,
                        reasoning_share=0.5, prompt_tokens=(260, 0.6), completion_tokens=(600, 0.6),
                        reasoning_tokens=(2500, 0.6), cot_boost=2.5, models=((LARGE, 0.6), (REASONING, 0.4))),
        sampling=Sampling(temperature=((0.7, 0.5), (None, 0.3), (1.0, 0.2)),
                          max_tokens=((4096, 0.6), (None, 0.4)), stream=0.2),
        network=Network(types=_net(hosting=0.7, vpn=0.3), prefixes=(2, 3), ips=(1, 2),
                        agents=("python-requests/2.31.0", "python-httpx/0.27.0", "aiohttp/3.9.5")),
        status=((200, 0.97), (401, 0.01), (429, 0.01), (500, 0.01)),
    ),
    Archetype(
        name="template_fleet",
        is_attack=True,
        summary="fleet whose members each look like a small developer (own card, network and user agent) "
        "but send one campaign's prompt templates through one scraping stack; reasoning-heavy",
        volume=0.15,
        volume_sigma=0.4,
        fleet=True,
        fleet_own_infra=True,
        timing=Timing(hourly=OFFICE, regularity=1.5, weekend=0.9, tz=(-8, -5, 0, 1, 8)),
        prompts=Prompts(repeat_share=0.02, pool=(10, 30), templates=(2, 4), template_share=0.85, flip_bits=5),
        content=Content(topics=BROAD_TOPICS, topics_per_account=3, reasoning_share=0.45,
                        prompt_tokens=(220, 0.6), completion_tokens=(700, 0.6), reasoning_tokens=(2200, 0.6),
                        cot_boost=2.5, models=((LARGE, 0.6), (REASONING, 0.4))),
        sampling=Sampling(temperature=((None, 0.5), (0.7, 0.5)), max_tokens=((None, 0.5), (4096, 0.5))),
        network=Network(types=_net(residential=0.6, hosting=0.3, mobile=0.1), prefixes=(1, 2), ips=(1, 3),
                        switch=0.01, keys=(1, 2), agents=SDK_AGENTS + SCRIPT_AGENTS),
        status=((200, 0.97), (400, 0.01), (429, 0.015), (500, 0.005)),
    ),
    Archetype(
        name="proxy_router",
        is_attack=True,
        summary="reseller/router hiding its sources: rotates through hundreds of proxy, VPN, Tor and hosting "
        "exits in many countries, many keys and user agents, diverse prompts, around the clock",
        volume=6.0,
        volume_sigma=0.3,
        timing=Timing(hourly=MILD, regularity=1.0, tz=(0, 3, 8)),
        prompts=Prompts(repeat_share=0.03, pool=(100, 500), templates=(0, 2), template_share=0.2,
                        flip_bits=10),
        content=Content(topics=BROAD_TOPICS, reasoning_share=0.35, prompt_tokens=(400, 1.0),
                        completion_tokens=(500, 0.9), reasoning_tokens=(2500, 0.7), cot_boost=2.5,
                        endpoints=((CHAT, 0.9), (RESPONSES, 0.1)),
                        models=((LARGE, 0.5), (MINI, 0.3), (REASONING, 0.2))),
        sampling=Sampling(temperature=((None, 0.4), (0.7, 0.3), (1.0, 0.2), (0.0, 0.1)),
                          max_tokens=((None, 0.5), (4096, 0.5)), logprobs=0.05, top_logprobs=((5, 1.0),),
                          stream=0.6),
        network=Network(types=_net(proxy=0.4, vpn=0.25, hosting=0.2, tor=0.05, residential=0.1),
                        prefixes=(40, 120), ips=(150, 500), skew=0.2, ipv6_share=0.05, unknown_share=0.05,
                        keys=(6, 20), agents=SCRIPT_AGENTS, agents_per_account=(5, 10), poses_as_browser=0.5),
        status=((200, 0.94), (401, 0.01), (429, 0.04), (500, 0.01)),
    ),
    Archetype(
        name="logprob_miner",
        is_attack=True,
        summary="extracts output distributions: logprobs with top_logprobs=20, logit-bias probing, n>1, "
        "temperature sweeps over a repeated prompt set, 1-16 token completions",
        volume=1.5,
        volume_sigma=0.4,
        timing=Timing(hourly=FLAT, regularity=8.0, tz=(0, 3, 8)),
        prompts=Prompts(repeat_share=0.6, pool=(200, 1000), pool_skew=0.3, templates=(1, 3),
                        template_share=0.5, flip_bits=4),
        content=Content(topics=BROAD_TOPICS, reasoning_share=0.1, prompt_tokens=(150, 0.7),
                        completion_tokens=(4, 0.8), reasoning_tokens=(300, 0.5), cot_boost=1.2,
                        endpoints=((COMPLETIONS, 0.5), (CHAT, 0.5)), models=((LARGE, 0.8), (MINI, 0.2))),
        sampling=Sampling(temperature_sweep=(0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0),
                          top_p=((None, 0.7), (1.0, 0.3)), n=((1, 0.4), (2, 0.2), (4, 0.2), (8, 0.2)),
                          max_tokens=((1, 0.6), (5, 0.3), (16, 0.1)), logprobs=0.95,
                          top_logprobs=((20, 0.85), (10, 0.1), (5, 0.05)), logit_bias=0.45,
                          logit_bias_range=(1, 300)),
        network=Network(types=_net(hosting=0.6, vpn=0.4), prefixes=(1, 3), ips=(2, 6), keys=(1, 3),
                        agents=("python-httpx/0.27.0", "OpenAI/Python 1.40.0")),
        status=((200, 0.96), (400, 0.02), (429, 0.02)),
    ),
    Archetype(
        name="programmatic_scraper",
        is_attack=True,
        summary="high-volume machine client: metronome-regular calls around the clock with no rest, diverse "
        "prompts, one key from one or two cloud IPs, frequent 429s",
        volume=6.0,
        volume_sigma=0.4,
        timing=Timing(hourly=FLAT, regularity=60.0, tz=(0,)),
        prompts=Prompts(repeat_share=0.01, pool=(10, 50), templates=(0, 1), template_share=0.1, flip_bits=10),
        content=Content(topics=BROAD_TOPICS, reasoning_share=0.25, prompt_tokens=(350, 0.8),
                        completion_tokens=(550, 0.7), reasoning_tokens=(2000, 0.6),
                        models=((LARGE, 0.6), (MINI, 0.2), (REASONING, 0.2))),
        sampling=Sampling(temperature=((None, 0.6), (0.7, 0.4)), max_tokens=((None, 0.5), (2048, 0.5))),
        network=Network(types=_net(hosting=1.0), prefixes=(1, 1), ips=(1, 2), keys=(1, 1),
                        agents=("python-requests/2.32.3", "Go-http-client/1.1"), poses_as_browser=0.5),
        status=((200, 0.92), (429, 0.07), (500, 0.01)),
    ),
    Archetype(
        name="logit_stealer",
        is_attack=True,
        summary="parameter stealing through logit bias (Carlini et al. 2024): max_tokens 1, logit bias on "
        "hundreds of token ids, top logprobs, short varied prompts, machine-paced around the clock",
        volume=1.5,
        volume_sigma=0.4,
        timing=Timing(hourly=FLAT, regularity=40.0, tz=(0, 3, 8)),
        prompts=Prompts(repeat_share=0.3, pool=(50, 300), templates=(0, 1), template_share=0.1, flip_bits=10),
        content=Content(topics=BROAD_TOPICS, reasoning_share=0.0, prompt_tokens=(40, 0.6),
                        completion_tokens=(1, 0.1), reasoning_tokens=(100, 0.5), cot_boost=1.0,
                        endpoints=((CHAT, 0.5), (COMPLETIONS, 0.5)), models=((LARGE, 0.8), (MINI, 0.2))),
        sampling=Sampling(temperature=((0.0, 0.7), (None, 0.3)), max_tokens=((1, 0.9), (2, 0.1)), logprobs=0.9,
                          top_logprobs=((5, 0.5), (20, 0.5)), logit_bias=0.97, logit_bias_range=(100, 300)),
        network=Network(types=_net(hosting=1.0), prefixes=(1, 2), ips=(1, 4), keys=(1, 2),
                        agents=("python-httpx/0.27.0", "OpenAI/Python 1.40.0")),
        status=((200, 0.97), (429, 0.03)),
    ),
    Archetype(
        name="model_pivot",
        is_attack=True,
        summary="extraction campaign that moves 70-90% of its traffic to the newly released model 10-90 minutes "
        "after its release: templated prompts demanding reasoning, long completions, cloud and VPN IPs",
        volume=3.0,
        volume_sigma=0.4,
        timing=Timing(hourly=MILD, regularity=2.0, tz=(0, 3, 8)),
        prompts=Prompts(repeat_share=0.01, pool=(10, 50), templates=(2, 5), template_share=0.5, flip_bits=6),
        content=Content(topics=BROAD_TOPICS, topics_per_account=4, reasoning_share=0.55,
                        prompt_tokens=(240, 0.7), completion_tokens=(650, 0.6), reasoning_tokens=(3000, 0.6),
                        cot_boost=2.5, endpoints=((CHAT, 0.75), (RESPONSES, 0.25)),
                        models=((LARGE, 0.6), (REASONING, 0.4))),
        sampling=Sampling(temperature=((None, 0.3), (0.7, 0.4), (1.0, 0.3)),
                          max_tokens=((None, 0.3), (4096, 0.4), (8192, 0.3)), stream=0.2),
        network=Network(types=_net(hosting=0.8, vpn=0.2), prefixes=(1, 2), ips=(2, 6), keys=(2, 4),
                        agents=("OpenAI/Python 1.40.0", "python-httpx/0.27.0", "aiohttp/3.9.5"),
                        agents_per_account=(1, 2)),
        status=((200, 0.96), (429, 0.03), (500, 0.01)),
        pivot=Pivot(share=(0.7, 0.9), lag_s=PIVOT_LAG_S),
    ),
    Archetype(
        name="multilingual_sweeper",
        is_attack=True,
        summary="capability sweep written in a language other than English: thousands of distinct templated "
        "prompts over several capability areas, most asking for step-by-step reasoning; prompt text, no topics",
        volume=3.0,
        timing=Timing(hourly=MILD, regularity=6.0, batch=(500, 3000), duty=0.7, tz=(3, 8, 9)),
        prompts=Prompts(repeat_share=0.005, pool=(5, 20), templates=(3, 6), template_share=0.9, flip_bits=3.5),
        content=Content(topics=_topics(math=0.25, code=0.25, science=0.15, legal=0.1, medical=0.1, finance=0.1,
                                       writing=0.05),
                        reasoning_share=0.6, prompt_tokens=(250, 0.4), completion_tokens=(600, 0.6),
                        reasoning_tokens=(2500, 0.6), cot_boost=2.5, endpoints=((CHAT, 0.8), (RESPONSES, 0.2)),
                        models=((LARGE, 0.6), (REASONING, 0.4)), languages=LANGUAGES),
        sampling=Sampling(temperature=((0.0, 0.5), (0.3, 0.2), (None, 0.3)), max_tokens=((4096, 0.6), (None, 0.4))),
        network=Network(types=_net(hosting=1.0), prefixes=(1, 1), ips=(1, 3), keys=(1, 2),
                        agents=("python-httpx/0.27.0", "aiohttp/3.9.5")),
        status=((200, 0.97), (429, 0.025), (500, 0.005)),
    ),
    Archetype(
        name="reseller_distiller",
        is_attack=True,
        summary="distiller hiding among a router's customers, at a customer's rate: the same egress, client and "
        "card, but diverse templated prompts over several capability areas demanding step-by-step reasoning, "
        "long completions, heavy reasoning tokens, around the clock",
        volume=0.15,
        volume_sigma=0.4,
        timing=Timing(hourly=MILD, regularity=1.2, tz=(-5, 0, 3, 8)),
        prompts=Prompts(repeat_share=0.01, pool=(10, 40), templates=(2, 5), template_share=0.6, flip_bits=6),
        content=Content(topics=_topics(math=0.25, code=0.2, science=0.15, reasoning=0.15, legal=0.08,
                                       medical=0.08, finance=0.09),
                        topics_per_account=5, reasoning_share=0.6, prompt_tokens=(250, 0.7),
                        completion_tokens=(700, 0.6), reasoning_tokens=(3000, 0.6), cot_boost=2.5,
                        endpoints=((CHAT, 0.8), (RESPONSES, 0.2)), models=((LARGE, 0.5), (REASONING, 0.5))),
        sampling=Sampling(temperature=((None, 0.3), (0.7, 0.4), (1.0, 0.3)),
                          max_tokens=((None, 0.3), (4096, 0.4), (8192, 0.3)), stream=0.3),
        network=_ROUTED,
        status=((200, 0.96), (429, 0.03), (500, 0.01)),
        reseller=ROUTER,
    ),
    Archetype(
        name="synchronised_fleet",
        is_attack=True,
        summary="one distillation campaign spread by a load balancer over many accounts, each looking like a separate "
        "small developer (own card, network, user agent, client stack and prompts): only time ties them, every "
        "member's calls rising and falling with the campaign's waves; reasoning extraction over broad topics",
        volume=0.25,
        volume_sigma=0.3,
        fleet=True,
        fleet_own_infra=True,
        timing=Timing(hourly=FLAT, regularity=3.0),
        prompts=Prompts(repeat_share=0.01, pool=(10, 40), templates=(1, 3), template_share=0.4, flip_bits=9),
        content=Content(topics=BROAD_TOPICS, topics_per_account=6, reasoning_share=0.5, prompt_tokens=(240, 0.7),
                        completion_tokens=(700, 0.6), reasoning_tokens=(2500, 0.6), cot_boost=2.5,
                        endpoints=((CHAT, 0.85), (RESPONSES, 0.15)), models=((LARGE, 0.6), (REASONING, 0.4))),
        sampling=Sampling(temperature=((None, 0.4), (0.7, 0.4), (1.0, 0.2)),
                          max_tokens=((None, 0.4), (4096, 0.4), (8192, 0.2)), stream=0.2),
        network=Network(types=_net(residential=0.6, business=0.15, mobile=0.1, hosting=0.15), prefixes=(1, 2),
                        ips=(1, 3), switch=0.01, keys=(1, 2), agents=SDK_AGENTS + SCRIPT_AGENTS),
        status=((200, 0.97), (400, 0.005), (429, 0.02), (500, 0.005)),
        campaign=Waves(active_min=(2, 15), lull_min=(2, 20), intensity_sigma=0.5, lull_level=0.02),
    ),
    Archetype(
        name="low_and_slow_fleet",
        is_attack=True,
        summary="low-and-slow campaign at scale: one fleet of hundreds (to tens of thousands) of accounts, each "
        "looking like a small developer (own card, network and user agent) and calling 0.05-0.25 times a minute "
        "around the clock on its own time zone, under every per-account threshold; they share only the campaign's "
        "few prompt templates and its scraping stack; reasoning extraction and a capability sweep over broad topics",
        volume=0.0,
        volume_sigma=0.0,
        fleet=True,
        fleet_own_infra=True,
        one_fleet=True,
        calls_per_min=(0.05, 0.25),
        timing=Timing(hourly=MILD, regularity=2.0, tz=(-8, -6, -5, -3, 0, 1, 2, 3, 5, 8, 9)),
        prompts=Prompts(repeat_share=0.01, pool=(5, 15), templates=(3, 6), template_share=0.85, flip_bits=5),
        content=Content(topics=BROAD_TOPICS, reasoning_share=0.55, prompt_tokens=(250, 0.6),
                        completion_tokens=(750, 0.6), reasoning_tokens=(2800, 0.6), cot_boost=2.5,
                        endpoints=((CHAT, 0.85), (RESPONSES, 0.15)), models=((LARGE, 0.55), (REASONING, 0.45))),
        sampling=Sampling(temperature=((None, 0.4), (0.7, 0.4), (1.0, 0.2)),
                          max_tokens=((None, 0.3), (4096, 0.5), (8192, 0.2)), stream=0.1),
        network=Network(types=_net(residential=0.7, mobile=0.2, business=0.1), prefixes=(1, 2), ips=(1, 3),
                        switch=0.01, keys=(1, 2), agents=SDK_AGENTS + SCRIPT_AGENTS),
        status=((200, 0.975), (400, 0.005), (429, 0.015), (500, 0.005)),
    ),
)

# fmt: on

ARCHETYPES: Final[MappingProxyType[str, Archetype]] = MappingProxyType({a.name: a for a in _ARCHETYPES})
BENIGN: Final = tuple(a.name for a in _ARCHETYPES if not a.is_attack)
ATTACKS: Final = tuple(a.name for a in _ARCHETYPES if a.is_attack)


def _check(archetypes: tuple[Archetype, ...]) -> None:
    for a in archetypes:
        if NEW in (m for m, _ in a.content.models):
            raise ValueError(f"{a.name}: {NEW_MODEL} is released mid-scenario; only a Pivot moves calls to it")
        unknown = set(a.content.languages) - set(LANGUAGES)
        if unknown:
            raise ValueError(f"{a.name}: no prompt text for languages {sorted(unknown)}")
        if a.reseller is not None and (a.fleet or a.cron):
            raise ValueError(f"{a.name}: a reseller's accounts send through its infrastructure, not a group's")
        if a.campaign is not None and not (a.fleet and a.fleet_own_infra):
            raise ValueError(f"{a.name}: a campaign clock ties the members of a fleet with infrastructure of their own")
        if a.cron is not None and a.fleet:
            raise ValueError(f"{a.name}: a company's accounts are grouped by its cron, not into fleets")
        if a.one_fleet and not a.fleet:
            raise ValueError(f"{a.name}: one_fleet groups a fleet archetype's accounts")
        if a.calls_per_min is not None and (a.volume != 0 or not 0 < a.calls_per_min[0] <= a.calls_per_min[1]):
            raise ValueError(f"{a.name}: an absolute rate replaces volume (0) and needs 0 < low <= high")
        if a.calls_per_min is not None and (a.campaign or a.cron):
            raise ValueError(f"{a.name}: an absolute rate is capped on a diurnal week, not a group's rhythm")
    resellers = {a.reseller.name: a.reseller for a in archetypes if a.reseller is not None}
    if any(a.reseller not in (None, resellers[a.reseller.name]) for a in archetypes if a.reseller):
        raise ValueError("archetypes naming one reseller must share its definition")


_check(_ARCHETYPES)

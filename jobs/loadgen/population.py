"""Concrete accounts drawn from archetypes: ids, keys, addresses, agents, payment, prompt habits.

Everything here is decided once per scenario from the seed (``labels`` needs it
without generating a single event). Strings live in global lookup tables so that
per-event columns are small integer arrays until the moment events are rendered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from jobs.loadgen.archetypes import ARCHETYPES, QUIET_PEAK_PER_HOUR, TOPICS, Archetype, Network, Reseller
from jobs.loadgen.clients import BROWSER_AGENTS, Client, claiming_browser, client_of, fleet_client, unit_draw
from jobs.loadgen.network import Address, Prefix, draw_addresses, draw_prefixes
from jobs.loadgen.prompts import PromptPool, PromptSource, fresh, random64, zipf_cum
from jobs.loadgen.timing import HOUR_S, MINUTE_S, Clock, Rhythm, campaign_rhythm, cron_rhythm, weekly_profile

_SIBLING_SHARE = 0.06  # benign accounts that share a card with another benign account (same company)
_SETUP, _EVENTS, _RESELLERS, _RHYTHMS = 0, 1, 4, 5  # SeedSequence branches (scenario: 2 delivery, variation: 3)


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth for one account."""

    archetype: str
    is_attack: bool
    fleet_id: str | None
    reseller_id: str | None = None  # the router all its calls went through (customers and distillers alike)
    company_id: str | None = None  # the company (one scheduler, one card) whose accounts it is one of


@dataclass(slots=True)
class Account:
    index: int
    account_id: str
    archetype: Archetype
    fleet_id: str | None
    weight: float  # relative volume before scaling to the scenario's rate
    profile: np.ndarray  # 168 UTC hourly activity multipliers
    keys: np.ndarray  # indices into Tables.key_ids
    key_cum: np.ndarray
    addresses: np.ndarray  # indices into Tables.ips
    address_cum: np.ndarray
    agents: np.ndarray  # indices into Tables.clients
    agent_cum: np.ndarray
    payment: str | None
    source: PromptSource
    pool: PromptPool
    batch_len: int  # events between pauses (0: no batches)
    completion_median: float
    reasoning_median: float
    seed: np.random.SeedSequence
    rate: float = 0.0  # events per second at activity 1, set once all weights are known
    language: str | None = None  # prompts written in this language and sent as prompt_text (None: English)
    pivot_lag_s: float = 0.0  # with a Pivot: seconds from NEW_MODEL's release until the account moves to it
    pivot_share: float = 0.0  # ... and the share of its generation calls on NEW_MODEL from then on
    reseller_id: str | None = None  # calls through this reseller's egress
    company_id: str | None = None  # one of this company's accounts
    rhythm: Rhythm | None = None  # its group's activity curve, followed instead of ``profile``
    calls_per_min: float = 0.0  # with Archetype.calls_per_min: its absolute rate at mean activity (else 0)

    @property
    def label(self) -> Label:
        return Label(self.archetype.name, self.archetype.is_attack, self.fleet_id, self.reseller_id, self.company_id)

    def clock(self, start_s: float) -> Clock:
        """The account's activity clock: its group's rhythm, or else its week."""
        return self.rhythm.clock(start_s) if self.rhythm is not None else Clock(self.profile, start_s)


@dataclass(slots=True)
class Tables:
    """Global lookup tables, indexed by the integer columns of generated batches."""

    key_ids: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)
    asns: list[int | None] = field(default_factory=list)
    network_types: list[str] = field(default_factory=list)
    countries: list[str | None] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)  # user agent and handshake fingerprints
    _client_index: dict[Client, int] = field(default_factory=dict)

    def add_keys(self, keys: list[str]) -> np.ndarray:
        start = len(self.key_ids)
        self.key_ids.extend(keys)
        return np.arange(start, len(self.key_ids), dtype=np.int32)

    def add_addresses(self, addresses: list[Address]) -> np.ndarray:
        start = len(self.ips)
        for a in addresses:
            self.ips.append(a.ip)
            self.asns.append(a.asn)
            self.network_types.append(a.network_type)
            self.countries.append(a.country)
        return np.arange(start, len(self.ips), dtype=np.int32)

    def client_ids(self, clients: list[Client]) -> np.ndarray:
        for c in clients:
            if c not in self._client_index:
                self._client_index[c] = len(self.clients)
                self.clients.append(c)
        return np.array([self._client_index[c] for c in clients], dtype=np.int32)


@dataclass(slots=True)
class Fleet:
    """What a group's accounts share: a fleet's infrastructure and prompts, a company's too, a campaign's clock.

    Of a campaign fleet (``Archetype.campaign``) only the id and the rhythm are used.
    """

    fleet_id: str  # a fleet's id, or a company's (``Archetype.cron``)
    prefixes: list[Prefix]
    addresses: list[Address]
    payments: list[str]
    agent: str
    templates: np.ndarray
    template_tokens: np.ndarray
    topics: np.ndarray
    rhythm: Rhythm | None = None


@dataclass(frozen=True, slots=True)
class Egress:
    """A reseller as its accounts' calls show it, drawn once per scenario."""

    reseller_id: str
    addresses: list[Address]  # exit addresses on a few /24s of one provider, shared by every account
    agent: str  # its gateway's user agent, sent through its own client stack
    card: str
    card_share: float  # accounts billed to ``card``


@dataclass(slots=True)
class Population:
    accounts: list[Account]
    tables: Tables

    def labels(self) -> dict[str, Label]:
        return {a.account_id: a.label for a in self.accounts}


def build_population(
    seed: int, mix: dict[str, int], *, fleet_size: int, start_s: float, duration_s: float, rate_eps: float,
    archetypes: Mapping[str, Archetype] = ARCHETYPES,
) -> Population:
    """Accounts for ``mix`` (accounts per archetype), with rates summing to ``rate_eps`` over the window.

    ``archetypes``: the behaviour models by name (a varied copy for the generalisation check).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SETUP]))
    event_seeds = iter(np.random.SeedSequence([seed, _EVENTS]).spawn(sum(mix.values())))
    tables = Tables()
    ids = _UniqueIds(rng)
    egresses = _egresses(seed, [archetypes[name] for name in sorted(mix)])
    plan: list[tuple[Archetype, Fleet | None]] = []
    for name in sorted(mix):  # sorted: the same mix in any order gives the same population
        archetype = archetypes[name]
        count = mix[name]
        if archetype.fleet or archetype.cron is not None:
            prefix = "fleet-" if archetype.fleet else "company-"
            for size in _group_sizes(rng, archetype, count, fleet_size):
                group_id = ids.new(prefix, 6)
                rhythm = _rhythm(seed, archetype, group_id, start_s, duration_s)
                shared = _fleet(rng, archetype, group_id, size, rhythm)
                plan.extend((archetype, shared) for _ in range(size))
        else:
            plan.extend((archetype, None) for _ in range(count))
    # Shuffle so account order (and anything derived from it) says nothing about the archetype.
    order = rng.permutation(len(plan))
    accounts: list[Account] = []
    fleet_members: dict[str, int] = {}
    for index, slot in enumerate(order):
        archetype, fleet = plan[int(slot)]
        member = fleet_members.get(fleet.fleet_id, 0) if fleet else 0
        if fleet:
            fleet_members[fleet.fleet_id] = member + 1
        egress = egresses[archetype.reseller.name] if archetype.reseller else None
        accounts.append(_account(rng, index, archetype, (fleet, member, egress), tables, ids, next(event_seeds)))
    _share_sibling_payments(rng, accounts)
    _set_rates(accounts, start_s, duration_s, rate_eps)
    return Population(accounts, tables)


class _UniqueIds:
    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._seen: set[str] = set()

    def new(self, prefix: str, hex_digits: int) -> str:
        while True:
            value = f"{prefix}{int(self._rng.integers(0, 16**hex_digits)):0{hex_digits}x}"
            if value not in self._seen:
                self._seen.add(value)
                return value


def _between(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _templates(rng: np.random.Generator, archetype: Archetype) -> tuple[np.ndarray, np.ndarray]:
    count = _between(rng, archetype.prompts.templates)
    median = archetype.content.prompt_tokens[0]
    return random64(rng, count), median * rng.lognormal(0.0, 0.3, count)


def _topics(rng: np.random.Generator, archetype: Archetype) -> tuple[np.ndarray, np.ndarray]:
    names = list(archetype.content.topics)
    weights = np.array([archetype.content.topics[t] for t in names], dtype=np.float64)
    narrow = archetype.content.topics_per_account
    if narrow:
        size = min(narrow, len(names))
        chosen = rng.choice(len(names), size=size, replace=False, p=weights / weights.sum())
        names = [names[int(i)] for i in chosen]
        weights = np.sort(rng.dirichlet(np.full(len(names), 4.0)))[::-1]
    return np.array([TOPICS.index(t) for t in names], dtype=np.int16), weights


def _egresses(seed: int, archetypes: list[Archetype]) -> dict[str, Egress]:
    """Every reseller of ``archetypes``, each from its own stream: the rest of the population stays as it was."""
    resellers: dict[str, Reseller] = {a.reseller.name: a.reseller for a in archetypes if a.reseller is not None}
    out = {}
    for name, reseller in sorted(resellers.items()):
        stream = int(unit_draw(name, "reseller") * 2**32)
        rng = np.random.default_rng(np.random.SeedSequence([seed, _RESELLERS, stream]))
        net = reseller.egress
        prefixes = draw_prefixes(rng, net.types, _between(rng, net.prefixes), ipv6_share=net.ipv6_share,
                                 one_provider=True)
        addresses = draw_addresses(rng, prefixes, max(len(prefixes), _between(rng, net.ips)),
                                   unknown_share=net.unknown_share)
        agent = net.agents[int(rng.integers(len(net.agents)))]
        reseller_id = f"reseller-{int(rng.integers(0, 16**6)):06x}"
        out[name] = Egress(reseller_id, addresses, agent, _payment(rng), reseller.card_share)
    return out


def _group_sizes(rng: np.random.Generator, archetype: Archetype, count: int, fleet_size: int) -> list[int]:
    """Accounts per group: fleets of ``fleet_size`` (the last one the rest) or one fleet of them all
    (``one_fleet``), companies of a size each draws."""
    if archetype.one_fleet:
        return [count]
    if archetype.cron is None:
        return [min(fleet_size, count - start) for start in range(0, count, fleet_size)]
    sizes: list[int] = []
    while count > 0:
        sizes.append(min(count, _between(rng, archetype.cron.accounts)))
        count -= sizes[-1]
    return sizes


def _rhythm(seed: int, archetype: Archetype, group_id: str, start_s: float, duration_s: float) -> Rhythm | None:
    """A group's shared clock, from a stream of its own (keyed by its id): the rest of the population stays."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _RHYTHMS, int(unit_draw(group_id, "rhythm") * 2**32)]))
    if archetype.cron is not None:
        return cron_rhythm(rng, archetype.cron)
    if archetype.campaign is not None:
        return campaign_rhythm(rng, archetype.campaign, start_s=start_s, duration_s=duration_s)
    return None


def _fleet(rng: np.random.Generator, archetype: Archetype, fleet_id: str, size: int, rhythm: Rhythm | None) -> Fleet:
    if archetype.campaign is not None:  # its members bring everything else themselves
        return Fleet(fleet_id, [], [], [], "", np.empty(0, np.uint64), np.empty(0), np.empty(0, np.int16), rhythm)
    net = archetype.network
    company = archetype.cron is not None  # one company: one cloud provider, one card
    prefixes = draw_prefixes(rng, net.types, _between(rng, net.prefixes), one_provider=company)
    # Fewer addresses than accounts: members reuse each other's exit IPs.
    count = max(len(prefixes), size * 2 // 3)
    addresses = draw_addresses(rng, prefixes, count, unknown_share=net.unknown_share)
    payments = [_payment(rng) for _ in range(1 if company else min(size, _between(rng, (2, 3))))]
    templates, template_tokens = _templates(rng, archetype)
    topics, _ = _topics(rng, archetype)
    agent = net.agents[int(rng.integers(len(net.agents)))]
    return Fleet(fleet_id, prefixes, addresses, payments, agent, templates, template_tokens, topics, rhythm)


def _clients(account_id: str, net: Network, agent_names: list[str], stack: str | None) -> list[Client]:
    """``stack``: the fleet or reseller whose own client stack sends the calls (None: the library's)."""
    # Drawn from the account id, not the RNG: the rest of the population stays as it was.
    if stack is not None:
        return [fleet_client(name, stack) for name in agent_names]
    browser = BROWSER_AGENTS[int(unit_draw(account_id, "which") * len(BROWSER_AGENTS))]
    if unit_draw(account_id, "browser") < net.browser:
        return [client_of(browser)]
    clients = [client_of(name) for name in agent_names]
    if unit_draw(account_id, "poses") < net.poses_as_browser:
        clients = [claiming_browser(c, browser) for c in clients]
    return clients


def _payment(rng: np.random.Generator) -> str:
    a, b = (int(x) for x in random64(rng, 2))
    return f"pf_{a:016x}{b:016x}"


def _account(
    rng: np.random.Generator,
    index: int,
    archetype: Archetype,
    group: tuple[Fleet | None, int, Egress | None],  # its fleet and member number, its reseller
    tables: Tables,
    ids: _UniqueIds,
    seed: np.random.SeedSequence,
) -> Account:
    net, content, prompts, timing = archetype.network, archetype.content, archetype.prompts, archetype.timing
    fleet, member, egress = group
    account_id = ids.new("org-", 12)
    keys = tables.add_keys([ids.new("key-", 10) for _ in range(_between(rng, net.keys))])
    if egress is not None:  # the reseller's exits, gateway and (mostly) card; its own keys and prompts
        addresses, agent_names = egress.addresses, [egress.agent]
        payment = egress.card if rng.random() < egress.card_share else None
    if fleet is None or archetype.fleet_own_infra:
        if egress is None:
            prefixes = draw_prefixes(rng, net.types, _between(rng, net.prefixes), ipv6_share=net.ipv6_share)
            addresses = draw_addresses(rng, prefixes, _between(rng, net.ips), unknown_share=net.unknown_share)
            chosen = rng.choice(len(net.agents), size=min(len(net.agents), _between(rng, net.agents_per_account)),
                                replace=False)
            agent_names = [net.agents[int(i)] for i in chosen]
            payment = None if rng.random() < net.payment_missing else _payment(rng)
        templates, template_tokens = _templates(rng, archetype)
        topics, topic_weights = _topics(rng, archetype)
        # A template fleet's prompts are the campaign's, sent from the member's own infrastructure; a
        # campaign fleet's members (tied only by its rhythm) write their own.
        if fleet is not None and archetype.campaign is None:
            templates, template_tokens, topics = fleet.templates, fleet.template_tokens, fleet.topics
            topic_weights = rng.dirichlet(np.full(topics.size, 4.0))
    else:
        count = min(len(fleet.addresses), _between(rng, net.ips))
        addresses = [fleet.addresses[int(i)] for i in rng.choice(len(fleet.addresses), count, replace=False)]
        agent_names = [fleet.agent]
        payment = fleet.payments[member % len(fleet.payments)]
        templates, template_tokens = fleet.templates, fleet.template_tokens
        topics = fleet.topics
        topic_weights = rng.dirichlet(np.full(topics.size, 4.0))
    # Accounts differ from their archetype's centre: each gets its own lengths and habits.
    source = PromptSource(
        templates=templates,
        template_tokens=template_tokens,
        template_share=prompts.template_share,
        flip_bits=prompts.flip_bits,
        topics=topics,
        topic_cum=np.cumsum(topic_weights),
        reasoning_share=float(np.clip(content.reasoning_share * rng.uniform(0.75, 1.25), 0.0, 1.0)),
        tokens=(content.prompt_tokens[0] * float(rng.lognormal(0.0, 0.25)), content.prompt_tokens[1]),
    )
    pool_size = _between(rng, prompts.pool)
    pool = PromptPool(fresh(rng, source, pool_size), zipf_cum(pool_size, prompts.pool_skew), prompts.sweep)
    if prompts.sweep:
        batch_len = pool_size  # one benchmark run, then a pause
    elif timing.batch:
        batch_len = _between(rng, timing.batch)
    else:
        batch_len = 0
    address_ids = tables.add_addresses(addresses)
    sigma = archetype.volume_sigma  # mean-one spread of volume between accounts
    # A fleet runs its own client stack, a reseller its gateway's; a campaign's members and a company's
    # accounts call through ordinary libraries.
    stack = egress.reseller_id if egress else None
    if fleet is not None and archetype.fleet and archetype.campaign is None:
        stack = fleet.fleet_id
    agents = tables.client_ids(_clients(account_id, net, agent_names, stack))
    account = Account(
        index=index,
        account_id=account_id,
        archetype=archetype,
        fleet_id=fleet.fleet_id if fleet and archetype.fleet else None,
        weight=archetype.volume * float(rng.lognormal(-0.5 * sigma**2, sigma)),
        profile=weekly_profile(timing.hourly, timing.weekend, int(rng.choice(timing.tz))),
        keys=keys,
        key_cum=zipf_cum(keys.size, 1.0),
        addresses=address_ids,
        address_cum=zipf_cum(address_ids.size, net.skew),
        agents=agents,
        agent_cum=zipf_cum(agents.size, 1.0),
        payment=payment,
        source=source,
        pool=pool,
        batch_len=batch_len,
        completion_median=content.completion_tokens[0] * float(rng.lognormal(0.0, 0.25)),
        reasoning_median=content.reasoning_tokens[0] * float(rng.lognormal(0.0, 0.2)),
        seed=seed,
        reseller_id=egress.reseller_id if egress else None,
        company_id=fleet.fleet_id if fleet and archetype.cron is not None else None,
        rhythm=fleet.rhythm if fleet else None,
    )
    _draw_from_id(account)
    return account


def _draw_from_id(account: Account) -> None:
    # Drawn from the account id, not the RNG: the rest of the population stays as it was.
    spec, account_id = account.archetype, account.account_id
    languages = spec.content.languages
    if languages:
        account.language = languages[int(unit_draw(account_id, "language") * len(languages))]
    if spec.pivot is not None:
        (lo_lag, hi_lag), (lo_share, hi_share) = spec.pivot.lag_s, spec.pivot.share
        account.pivot_lag_s = lo_lag + unit_draw(account_id, "pivot_lag") * (hi_lag - lo_lag)
        account.pivot_share = lo_share + unit_draw(account_id, "pivot_share") * (hi_share - lo_share)
    if spec.calls_per_min is not None:  # log-uniform between the bounds
        lo_rate, hi_rate = spec.calls_per_min
        account.calls_per_min = lo_rate * (hi_rate / lo_rate) ** unit_draw(account_id, "calls_per_min")


def _share_sibling_payments(rng: np.random.Generator, accounts: list[Account]) -> None:
    # A company with several organisations pays with one card: a benign shared fingerprint.
    # A reseller's customers already share its card, a cron company's accounts their company's.
    benign = [a for a in accounts if not a.archetype.is_attack and a.payment is not None and a.reseller_id is None
              and a.company_id is None]
    pairs = int(len(benign) * _SIBLING_SHARE) // 2
    chosen = rng.permutation(len(benign))[: pairs * 2]
    for first, second in zip(chosen[::2], chosen[1::2], strict=True):
        benign[int(second)].payment = benign[int(first)].payment


def _set_rates(accounts: list[Account], start_s: float, duration_s: float, rate_eps: float) -> None:
    # Scale so the expected number of events over the window is exactly rate * duration,
    # whatever hour of the day or week the window starts at. Quiet accounts (Archetype.calls_per_min)
    # call at their own absolute rate; the others share what is left.
    loads = np.array([a.clock(start_s).load(np.array([duration_s]))[0] for a in accounts])
    quiet = np.array([a.archetype.calls_per_min is not None for a in accounts])
    fixed = np.array([_quiet_rate(a) if q else 0.0 for a, q in zip(accounts, quiet, strict=True)])
    weights = np.where(quiet, 0.0, [a.weight for a in accounts])
    total, taken = rate_eps * duration_s, float(np.dot(fixed, loads))
    if not np.any(weights > 0) or taken >= total:
        raise ValueError(f"the quiet accounts' absolute rates alone send {taken:,.0f} of the {total:,.0f} events "
                         "of rate x duration: the rest of the mix needs a share (raise the rate or add accounts)")
    scale = (total - taken) / float(np.dot(weights, loads))
    for account, weight, rate in zip(accounts, weights, fixed, strict=True):
        account.rate = float(rate) if rate > 0 else float(weight * scale)


def _quiet_rate(account: Account) -> float:
    """Events a second at activity 1 of a quiet account: its calls a minute, lowered so that its busiest hour
    averages at most QUIET_PEAK_PER_HOUR calls."""
    return min(account.calls_per_min / MINUTE_S, QUIET_PEAK_PER_HOUR / HOUR_S / float(account.profile.max()))

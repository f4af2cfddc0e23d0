"""Identities and planted abuse: who shares which identifier, the bonus hunters' lives, the truth.

Every player gets identifiers besides the main stream's device and IP: a name (first and last, from
small per-country lists, so strangers share names), an address with a postcode and payment
instruments (one fingerprint per player and payment provider; a player mostly pays with one). Then
some of a chunk's players are put in groups that share some of them (rates: :class:`World.abuse
<crm.simulator.world.Abuse>`):

* **rings** (``ring_member``): 2-15 new accounts of one brand and country, registered within hours
  to a few days; each account shares a random subset of its ring's device, IP (its /24, sometimes
  the very address), payment instrument, address (sometimes written "12 High St" or in lower case)
  and name (written "Jon Smith", "J. Smith", "john smith", "Smith John"), mostly two types or more.
  The first account of a ring holds the values the others copy. Most ring accounts hunt bonuses.
* **bonus hunters** (``bonus_hunter``, in a ring or alone): the main stream's life of the account
  is dropped (all but its registration and consents: :meth:`crm.simulator.chunk.Chunk.emit`) and
  replaced by :meth:`Identities.hunt`: the smallest deposit, the welcome bonus, about the wagering
  it requires on low-edge table and live games, a withdrawal of what is left, then nothing.
* **re-registrations** (``re_registration``): a new account of the same brand and country, opened
  while a self-excluded player is excluded, reusing some of their device, payment instrument,
  name with birth date and address (another e-mail); ``linked_to`` names the excluded player.
* innocent sharing: **families** (one address; mostly the home router's IP; often one surname;
  sometimes a household device or a joint card), **offices** (one /24, half of them one IP; some
  with a shared workstation), a **carrier NAT** (one IP per carrier gateway and country, the same in
  every chunk: hundreds of accounts). Innocents are most of the accounts that share any one type.

The truth (``truth/abuse_accounts.parquet``) has a row per (player, role); ``shared_attributes``
lists the types (:data:`ATTRIBUTES`) the account shares with at least one other account of its
group as the events show them: ``ip`` the same address, ``ip_net`` another address of the same /24,
``name`` a variant of one name, ``last_name`` a family's surname, ``payment_instrument`` only where
both accounts paid with it. A hunter alone has none (null).

Everything here is drawn from ``default_rng([seed, chunk, 19])``. It changes the main stream's
values only (identifiers, the usual payment provider, a birth date), never how many numbers a draw
takes, so every other player's life is the same as without it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from crm.simulator.world import (
    CAT_SEC,
    CAT_VOL,
    DAY,
    ET,
    FAMILY_CARD,
    FAMILY_DEVICE,
    FAMILY_ROUTER,
    FAMILY_SIZE_P,
    FAMILY_SURNAME,
    FIRST_N,
    FIRST_START,
    FX,
    GAME_PROVIDER,
    HUNT_RTP,
    HUNT_STAKE_EUR,
    LAST_N,
    LAST_START,
    NAT_GATEWAYS,
    NF,
    NL,
    NLAST,
    NSTREET,
    OFFICE_ONE_IP,
    OFFICE_SIZE,
    OFFICE_WORKSTATION,
    PSP_METHOD,
    REREG_REUSE_P,
    RING_BURST_H,
    RING_SAME_IP,
    RING_SIZE_P,
    RING_SIZES,
    RING_TAKE,
    RING_TYPE_P,
    STEP,
    STREET_N,
    STREET_START,
    UK,
    group_first,
)

if TYPE_CHECKING:
    from crm.simulator.chunk import Chunk

ATTRIBUTES = ("device_id", "ip", "ip_net", "payment_instrument", "address", "name", "last_name", "birth_date")
DEV, IP, NET, INST, ADDR, NAME, LAST, BIRTH = range(len(ATTRIBUTES))
ROLES = ("ring_member", "bonus_hunter", "re_registration", "family", "carrier_nat", "office")
RING, HUNTER, REREG, FAMILY, NAT, OFFICE = range(len(ROLES))
# the truth's text of each bit mask of ATTRIBUTES
SHARED_TEXT = tuple(",".join(a for i, a in enumerate(ATTRIBUTES) if m >> i & 1) for m in range(1 << len(ATTRIBUTES)))
RING_ATTRS = (DEV, NET, INST, ADDR, NAME)  # the columns of RING_TYPE_P
RING_NAME_MODE_P = (0.3, 0.2, 0.2, 0.15, 0.15, 0.0)  # how a ring account writes the ring's name (NAME_MODES)
_KEY = 1e12  # pool * _KEY + time (below 1e11): one sort key
_WINDOW = 200  # a group's other accounts are drawn from this many candidates after its first


def draw_groups(rng: np.random.Generator, cand: np.ndarray, pool: np.ndarray, t: np.ndarray,
                sizes: np.ndarray, span: np.ndarray | float, reach: float | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Groups among the players ``cand``: each group's first account at random, the others drawn
    among the next candidates of its pool (in order of ``t``) up to ``t`` + ``span`` (or further,
    up to ``t`` + ``reach``, where that holds too few). A player joins one group at most; a group
    left with one account is dropped. Returns (players, group), sorted by group and ``t``: the first
    account of a group is its leader."""
    c = cand[np.lexsort((t[cand], pool[cand]))]
    none = np.zeros(0, np.int64)
    if len(c) < 2 or len(sizes) == 0:
        return none, none
    G = len(sizes)
    key = pool[c] * _KEY + t[c]
    a = rng.integers(0, len(c), G)
    hi = np.searchsorted(key, key[a] + span)
    if reach is not None:
        hi = np.minimum(np.maximum(hi, a + sizes), np.searchsorted(key, key[a] + reach))
    m = np.clip(hi - a - 1, 0, _WINDOW)
    gid = np.repeat(np.arange(G), m)
    pos = np.repeat(a + 1, m) + np.arange(len(gid)) - group_first(m)
    pos = pos[np.lexsort((rng.random(len(pos)), gid))]  # shuffled within each group
    keep = np.arange(len(pos)) - group_first(m) < (sizes - 1)[gid]
    mem = np.concatenate([a, pos[keep]])
    grp = np.concatenate([np.arange(G), gid[keep]])
    o = np.argsort(grp, kind="stable")
    mem, grp = mem[o], grp[o]
    first = np.zeros(len(mem), bool)
    first[np.unique(mem, return_index=True)[1]] = True  # the first group that drew a player has them
    mem, grp = mem[first], grp[first]
    ok = (np.bincount(grp, minlength=G) >= 2)[grp]
    mem, grp = c[mem[ok]], np.unique(grp[ok], return_inverse=True)[1]
    o = np.lexsort((t[mem], grp))
    return mem[o], grp[o]


def top_up(rng: np.random.Generator, have: np.ndarray, allowed: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``have`` (rows of flags) with random ``allowed`` flags added until a row has ``k`` (if it can)."""
    keys = np.where(have, 2.0, np.where(allowed, rng.random(have.shape), -1.0))
    rank = np.argsort(np.argsort(-keys, axis=1, kind="stable"), axis=1, kind="stable")
    return have | ((rank < np.asarray(k)[:, None]) & allowed)


def leaders(g: np.ndarray) -> np.ndarray:
    """Position of each member's group leader (the first of its group)."""
    return group_first(np.bincount(g))


class Identities:
    """The identifiers of one chunk's players, the groups that share them, the hunters' lives."""

    def __init__(self, ch: Chunk):
        self.ch = ch
        self.rng = rng = np.random.default_rng([ch.w.seed, ch.index, 19])
        n, cc = ch.n, ch.cc
        self.first = FIRST_START[cc] + (rng.random(n) * FIRST_N[cc]).astype(np.int64)
        self.last = LAST_START[cc] + (rng.random(n) * LAST_N[cc]).astype(np.int64)
        u = rng.random(n)
        self.name_mode = np.where(u < 0.93, 0, np.where(u < 0.98, 3, 5))  # a few write lower / upper case
        self.addr = rng.integers(0, 2**40, n)
        self.street_form = np.zeros(n, np.int64)
        self.inst_own = rng.integers(0, 2**62, n).astype(np.uint64)
        self.inst = self.inst_own.copy()  # the instrument (key) at the usual provider: maybe a group's
        self.dev_src = np.arange(n)  # whose drawn device / IP an account registers with
        self.ip_src = np.arange(n)
        self.ip_fixed = np.full(n, -1, np.int64)  # an office's or carrier's address instead
        self.ip_octet = np.full(n, -1, np.int64)  # another address of the source's /24
        self.used = ch.minor.copy()  # in a group already (minors never are)
        self.hunter = np.zeros(n, bool)
        self.groups: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        w = ch.w
        welcome_ok = ~ch.minor & ~((cc == NL) & (ch.age_end < 24))
        self.hunt_ok = (welcome_ok & ~ch.pre & ~ch.blocked & ~ch.lim & ch.kyc_at_reg
                        & (ch.reg_ts < w.end_ts - 5 * DAY))
        self._rings()
        self._reregistrations()
        lone = np.nonzero(self.hunt_ok & ~self.used)[0]
        lone = rng.choice(lone, min(rng.poisson(w.abuse.hunters * n), len(lone)), replace=False)
        self.hunter[lone] = self.used[lone] = True
        self._families()
        self._offices()
        self._carrier_nat()
        self.dropping = bool(self.hunter.any())  # Chunk.emit leaves out the hunters' main-stream events

    def _group(self, role: int, p: np.ndarray, g: np.ndarray, take: np.ndarray,
               row: np.ndarray | None = None, linked: np.ndarray | None = None) -> None:
        """Record a group for the truth: members ``p``, group ``g``, the types each takes of its group."""
        if not len(p):
            return
        self.used[p] = True
        full = np.zeros((len(p), len(ATTRIBUTES)), bool)
        for a, col in take.items():
            full[:, a] = col
        self.groups.append((role, p, g, full, np.ones(len(p), bool) if row is None else row,
                            np.full(len(p), -1) if linked is None else linked))

    def _copy_instrument(self, p: np.ndarray, src: np.ndarray) -> None:
        self.inst[p] = self.inst[src]
        self.ch.psp[p] = self.ch.psp[src]

    def _copy_name(self, p: np.ndarray, src: np.ndarray) -> None:
        self.first[p], self.last[p] = self.first[src], self.last[src]

    # ---------------------------------------------------------------- abuse
    def _rings(self) -> None:
        ch, rng, w = self.ch, self.rng, self.ch.w
        cand = np.nonzero(~self.used & ~ch.pre & ~ch.blocked & (ch.reg_ts < w.end_ts - 5 * DAY))[0]
        G = rng.poisson(w.abuse.rings * ch.n / float((RING_SIZES * RING_SIZE_P).sum()))
        sizes = rng.choice(RING_SIZES, G, p=RING_SIZE_P)
        span = np.exp(rng.uniform(math.log(RING_BURST_H[0]), math.log(RING_BURST_H[1]), G)) * 3600.0
        p, g = draw_groups(rng, cand, ch.brand * 5 + ch.cc, ch.reg_ts, sizes, span, RING_BURST_H[1] * 3600.0)
        if not len(p):
            return
        M, R = len(p), int(g[-1]) + 1
        lead = p[leaders(g)]
        head = p == lead
        # the ring's types (two or more for nine rings in ten), then each account's share of them
        types = top_up(rng, rng.random((R, 5)) < RING_TYPE_P, np.ones((R, 5), bool),
                       np.where(rng.random(R) < 0.9, 2, 1))
        take = (rng.random((M, 5)) < RING_TAKE) & types[g]
        take = top_up(rng, take, types[g], np.where(rng.random(M) < 0.9, 2, 1))
        take[head] = types[g[head]]
        exact = rng.random(M) < RING_SAME_IP
        octet = rng.integers(0, 256, M)
        street_form = rng.choice(3, M, p=(0.6, 0.25, 0.15))
        name_mode = rng.choice(6, M, p=RING_NAME_MODE_P)
        dev, net, inst, addr, name = (take[:, i] & ~head for i in range(5))
        self.dev_src[p[dev]] = lead[dev]
        self.ip_src[p[net]] = lead[net]
        self.ip_octet[p[net & ~exact]] = octet[net & ~exact]
        self._copy_instrument(p[inst], lead[inst])
        self.addr[p[addr]] = self.addr[lead[addr]]
        self.street_form[p[addr]] = street_form[addr]
        self._copy_name(p[name], lead[name])
        self.name_mode[p[name]] = name_mode[name]
        self.name_mode[p[head & take[:, 4]]] = 0
        # the leader is on the ring's IP (exact) where any account is, else on its /24
        on_ip = np.bincount(g, net & exact, R)[g] > 0
        ip = np.where(head, take[:, 1] & on_ip, net & exact)
        self._group(RING, p, g, {DEV: take[:, 0], IP: ip, NET: take[:, 1] & ~ip, INST: take[:, 2],
                                 ADDR: take[:, 3], NAME: take[:, 4]})
        self.hunter[p] = self.hunt_ok[p] & (rng.random(M) < w.abuse.ring_hunters)

    def _reregistrations(self) -> None:
        """A self-excluded player's new account: same brand and country, registered while excluded."""
        ch, rng, w = self.ch, self.rng, self.ch.w
        se = np.nonzero(ch.se & ~self.used)[0]
        lo = ch.blk_lo[se] + 0.5 * DAY
        hi = np.minimum(ch.blk_until[se], w.end_ts - DAY)
        pool = ch.brand * 5 + ch.cc
        cand = np.nonzero(~self.used & ~ch.blocked & ~ch.pre)[0]
        c = cand[np.lexsort((ch.reg_ts[cand], pool[cand]))]
        key = pool[c] * _KEY + ch.reg_ts[c]
        ia = np.searchsorted(key, pool[se] * _KEY + lo)
        ib = np.searchsorted(key, pool[se] * _KEY + np.maximum(hi, lo))
        ok = np.nonzero(ib > ia)[0]
        pick = rng.choice(ok, min(rng.poisson(w.abuse.reregistrations * ch.n), len(ok)), replace=False)
        a = se[pick]
        b = c[ia[pick] + (rng.random(len(pick)) * (ib - ia)[pick]).astype(np.int64)]
        first = np.sort(np.unique(b, return_index=True)[1])
        a, b = a[first], b[first]
        R = len(a)
        if not R:
            return
        # device, payment instrument, name + birth date, address; a name with a birth date only
        # where the ages agree on the NL under-24 rule
        allowed = np.ones((R, 4), bool)
        allowed[:, 2] = (ch.cc[a] != NL) | ((ch.age_end[a] < 24) == (ch.age_end[b] < 24))
        take = top_up(rng, (rng.random((R, 4)) < REREG_REUSE_P) & allowed, allowed,
                      np.where(rng.random(R) < 0.85, 2, 1))
        name_mode = np.where(rng.random(R) < 0.5, 0, rng.choice(np.array([1, 2, 3, 4]), R))
        dev, inst, name, addr = take.T
        self.dev_src[b[dev]] = a[dev]
        self._copy_instrument(b[inst], a[inst])
        self._copy_name(b[name], a[name])
        self.name_mode[b[name]] = name_mode[name]
        ch.birth_day[b[name]] = ch.birth_day[a[name]]
        self.addr[b[addr]] = self.addr[a[addr]]
        both = np.concatenate([a, b])
        tk = np.concatenate([take, take])
        self._group(REREG, both, np.tile(np.arange(R), 2),
                    {DEV: tk[:, 0], INST: tk[:, 1], NAME: tk[:, 2], BIRTH: tk[:, 2], ADDR: tk[:, 3]},
                    row=np.arange(2 * R) >= R, linked=np.concatenate([np.full(R, -1), a]))

    # ---------------------------------------------------------------- innocent sharing
    def _families(self) -> None:
        ch, rng = self.ch, self.rng
        sizes_p = np.array(FAMILY_SIZE_P)
        G = rng.poisson(ch.w.abuse.families * ch.n / float((np.arange(2, 6) * sizes_p).sum()))
        sizes = rng.choice(np.arange(2, 6), G, p=sizes_p)
        p, g = draw_groups(rng, np.nonzero(~self.used)[0], ch.brand * 5 + ch.cc, rng.random(ch.n), sizes, 1e11)
        if not len(p):
            return
        M, F = len(p), int(g[-1]) + 1
        lead = p[leaders(g)]
        head = p == lead
        surname, device, card = (rng.random((3, F)) < np.array([[FAMILY_SURNAME], [FAMILY_DEVICE], [FAMILY_CARD]]))
        router = head | (rng.random(M) < FAMILY_ROUTER)
        last = surname[g] & (head | (rng.random(M) < 0.85))
        dev = device[g] & (head | (rng.random(M) < 0.7))
        inst = card[g] & (head | (rng.random(M) < 0.7))
        self.addr[p] = self.addr[lead]
        self.ip_src[p[router]] = lead[router]
        self.last[p[last]] = self.last[lead[last]]
        self.dev_src[p[dev]] = lead[dev]
        self._copy_instrument(p[inst & ~head], lead[inst & ~head])
        self._group(FAMILY, p, g, {ADDR: np.ones(M, bool), IP: router, LAST: last, DEV: dev, INST: inst})

    def _offices(self) -> None:
        ch, rng = self.ch, self.rng
        med, sd, lo, hi = OFFICE_SIZE
        G = rng.poisson(ch.w.abuse.offices * ch.n / (med * math.exp(sd * sd / 2)))
        sizes = np.clip(np.rint(med * np.exp(rng.normal(0.0, sd, G))), lo, hi).astype(np.int64)
        p, g = draw_groups(rng, np.nonzero(~self.used)[0], ch.cc.astype(np.int64), rng.random(ch.n), sizes, 1e11)
        if not len(p):
            return
        M, n_off = len(p), int(g[-1]) + 1
        lead = p[leaders(g)]
        head = p == lead
        net, gateway = rng.integers(0, 2**16, n_off), rng.integers(0, 256, n_off)
        one_ip, station = rng.random((2, n_off)) < np.array([[OFFICE_ONE_IP], [OFFICE_WORKSTATION]])
        self.ip_fixed[p] = net[g] * 256 + np.where(one_ip[g], gateway[g], rng.integers(0, 256, M))
        dev = station[g] & (head | (rng.random(M) < 0.15))
        self.dev_src[p[dev]] = lead[dev]
        self._group(OFFICE, p, g, {IP: one_ip[g], NET: ~one_ip[g], DEV: dev})

    def _carrier_nat(self) -> None:
        ch, rng = self.ch, self.rng
        p = np.nonzero(~self.used & (rng.random(ch.n) < ch.w.abuse.carrier_nat))[0]
        gw = rng.integers(0, NAT_GATEWAYS, len(p))
        self.ip_fixed[p] = ch.w.nat_ip[ch.cc[p], gw]
        self._group(NAT, p, ch.cc[p] * NAT_GATEWAYS + gw, {IP: np.ones(len(p), bool)})

    # ---------------------------------------------------------------- what the events carry
    def registration(self, device: np.ndarray, ip: np.ndarray) -> dict[str, np.ndarray]:
        """The registration's identifier columns, from the main stream's device and IP draws."""
        cc = self.ch.cc
        ip = np.where(self.ip_fixed >= 0, self.ip_fixed, ip[self.ip_src])
        ip = np.where(self.ip_octet >= 0, ip // 256 * 256 + self.ip_octet, ip)
        mode, fi, lj = self.name_mode, self.first, self.last
        first_form = np.array([0, 1, 2, 3, 0, 0])[mode]
        last_form = np.array([0, 0, 0, 1, 0, 2])[mode]
        swapped = mode == 4
        street = STREET_START[cc] + (self.addr // 200) % STREET_N[cc]
        return dict(device=device[self.dev_src], ip=ip,
                    fname=np.where(swapped, 4 * NF + lj, first_form * NF + fi),
                    lname=np.where(swapped, fi, 4 * NF + last_form * NLAST + lj),
                    street=self.street_form * NSTREET + street, house=self.addr % 200 + 1, pc=self.addr // 1600)

    def instrument(self, p: np.ndarray, psp: np.ndarray) -> np.ndarray:
        """Fingerprint (48 bits) of what a player pays with at a provider: at their usual provider
        their instrument (maybe a group's), elsewhere one of their own."""
        base = np.where(psp == self.ch.psp[p], self.inst[p], self.inst_own[p])
        x = (base ^ (np.asarray(psp).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))) * np.uint64(0xBF58476D1CE4E5B9)
        return (x >> np.uint64(16)).astype(np.int64)

    # ---------------------------------------------------------------- hunters
    def hunt(self) -> None:
        """The bonus hunters' lives: soon after registering the smallest deposit, the welcome bonus
        (100% of it), about the wagering it requires (x35, UK x10) at 0.5-1.5 EUR a round on low-edge
        table (and some live) games in one to three sessions, the bonus consumed, a withdrawal of
        what is left; then nothing. Ids continue the chunk's (sessions, payments, bonuses)."""
        ch, rng, w = self.ch, self.rng, self.ch.w
        self.dropping = False  # the main stream is drawn: what comes now is the hunters' own
        h = np.nonzero(self.hunter)[0]
        H = len(h)
        if not H:
            return
        cc = ch.cc[h]
        step = STEP[cc] * 100
        dep = 2 * step  # the smallest deposit (crm.simulator.chunk.Chunk._payments)
        psp = ch.psp[h]
        t = ch.reg_ts[h] + rng.uniform(120.0, 3 * 3600.0, H)
        pay = dict(amount=dep, psp=psp, method=PSP_METHOD[psp], tr=ch.tr_next + np.arange(H), reason=-1)
        ch.emit("pay", ET["payment.intent"], t, h, **pay)
        ch.emit("pay", ET["payment.authorized"], t + rng.uniform(1.0, 8.0, H), h, **pay)
        cap = t + rng.uniform(10.0, 60.0, H)
        ch.emit("pay", ET["payment.captured"], cap, h, **pay)
        wagering = np.where(cc == UK, 10, 35)
        bonus = dict(template=0, offer=0, cost=dep, wagering=wagering, campaign=-1, bid=ch.bid_next + np.arange(H))
        ch.emit("bonus", ET["bonus.issued"], cap + rng.uniform(5.0, 60.0, H), h, **bonus)
        # games: the requirement (and a little more) in small stakes
        need = wagering * dep * rng.uniform(1.0, 1.08, H)
        spr = rng.uniform(*HUNT_STAKE_EUR, H) * FX[cc] * 100
        ng = np.maximum(1, np.ceil(need / (30 * spr))).astype(np.int64)
        gh = np.repeat(np.arange(H), ng)
        G = len(gh)
        share = rng.gamma(4.0, 1.0, G)
        stake = np.maximum(1, np.rint(need[gh] * share / np.bincount(gh, share)[gh])).astype(np.int64)
        rounds = np.maximum(1, np.rint(stake / spr[gh])).astype(np.int64)
        cat = np.where(rng.random(G) < 0.8, 2, 1)
        game = ch.fav[h[gh], cat]
        k = rounds / CAT_VOL[cat] ** 2
        win = np.rint(stake * rng.gamma(k, HUNT_RTP / k)).astype(np.int64)
        g_dur = rounds * CAT_SEC[cat] * rng.lognormal(0.0, 0.25, G)
        # sessions: one to three, hours apart; the games in order
        ns = np.minimum(ng, 1 + (rng.random(H) < 0.6) + (rng.random(H) < 0.3))
        s_first = np.cumsum(ns) - ns
        g_s = s_first[gh] + (np.arange(G) - group_first(ng)) * ns[gh] // ng[gh]
        S = int(ns.sum())
        s_h = np.repeat(np.arange(H), ns)
        s_dur = np.floor(np.bincount(g_s, g_dur, S) + rng.uniform(30.0, 300.0, S))
        inc = s_dur + rng.uniform(2 * 3600.0, 30 * 3600.0, S)
        cum = np.cumsum(inc) - inc
        s_start = np.floor(cap[s_h] + rng.uniform(60.0, 600.0, H)[s_h] + cum - cum[s_first[s_h]])
        sid = len(ch.s_p) + np.arange(S)
        s_p = h[s_h]
        dev = ch.dev[s_p]
        ch.session_events(sid, s_start, s_dur, s_p, dev, ((dev != 1) & ch.app[s_p]).astype(np.int64))
        cg = np.cumsum(g_dur)
        g_ts = s_start[g_s] + 15.0 + cg - (cg - g_dur)[group_first(np.bincount(g_s, minlength=S))]
        ch.emit("bet", ET["bet.settled"], g_ts, h[gh], stake=stake, win=win, in_bonus=True,
                provider=GAME_PROVIDER[game], game=game, category=cat, rounds=rounds, sid=sid[g_s])
        last_bet = g_ts[np.cumsum(ng) - 1]
        ch.emit("bonus", ET["bonus.consumed"], last_bet + rng.uniform(1.0, 30.0, H), h, **bonus)
        # what is left (deposit + bonus + net win), withdrawn soon after the last session
        left = np.floor((2 * dep + np.bincount(gh, win - stake, H)) / step) * step
        out = left >= step
        end = (s_start + s_dur)[s_first + ns - 1]
        wts = end + rng.uniform(120.0, 3600.0, H)
        ch.emit("pay", ET["payment.withdraw"], wts[out], h[out], amount=left[out].astype(np.int64),
                psp=psp[out], method=PSP_METHOD[psp[out]], tr=ch.tr_next + H + np.arange(int(out.sum())),
                reason=-1)
        ch.T[h] = (np.where(out, wts, end) - w.start_ts) / DAY  # and gone (the truth's churned_on)

    # ---------------------------------------------------------------- truth
    def truth(self) -> dict[str, np.ndarray]:
        """Rows (player, role, ring number, linked player, shared types as a bit mask; -1 = null),
        sorted by player and role. Called once the chunk's events are drawn: an instrument counts as
        shared only where both accounts paid with it."""
        ch = self.ch
        paid = np.zeros(ch.n, bool)  # an event names the instrument at their usual provider
        for _, _, p, cols in ch.parts.get("pay", []):
            paid[p[(cols["psp"] == ch.psp[p]) & (cols["inst"] >= 0)]] = True
        bits = 1 << np.arange(len(ATTRIBUTES))
        rows: list[tuple[np.ndarray, ...]] = []
        ring_of = np.full(ch.n, -1)
        ring_mask = np.full(ch.n, -1)
        for role, p, g, take, row, linked in self.groups:
            take = take.copy()
            take[:, INST] &= paid[p]
            G = int(g.max()) + 1
            count = np.stack([np.bincount(g, take[:, a], G) for a in range(len(ATTRIBUTES))], axis=1)
            count[:, NET] = np.bincount(g, take[:, NET] | take[:, IP], G)
            mask = ((take & (count[g] >= 2)) * bits).sum(axis=1)
            ring = g if role == RING else np.full(len(p), -1)
            if role == RING:
                ring_of[p], ring_mask[p] = g, mask
            rows.append((p[row], np.full(int(row.sum()), role), ring[row], linked[row], mask[row]))
        h = np.nonzero(self.hunter)[0]
        rows.append((h, np.full(len(h), HUNTER), ring_of[h], np.full(len(h), -1), ring_mask[h]))
        p, role, ring, linked, mask = (np.concatenate(c) for c in zip(*rows, strict=True))
        o = np.lexsort((role, p))
        return dict(p=p[o], role=role[o], ring=ring[o], linked=linked[o], mask=mask[o])

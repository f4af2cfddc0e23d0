"""One chunk of players: their lives drawn from the chunk's own random stream, held as
column arrays per event family until :mod:`crm.simulator.files` writes them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, ndtri

from crm.contract import CHANNELS, CONSENT_CHANNELS
from crm.simulator.abuse import Identities
from crm.simulator.world import (
    CAT_MULT,
    CAT_N,
    CAT_PREFS,
    CAT_ROUNDS,
    CAT_SEC,
    CAT_START,
    CAT_VOL,
    CONSENT_P,
    COUNTRY_P,
    DAY,
    DEP_EUR,
    DEP_P,
    ET,
    FX,
    GAME_PROVIDER,
    GAMES_LAM,
    HAZARD,
    INF,
    INSTRUMENT_EVENTS,
    NL,
    PSP_METHOD,
    REGION_N,
    REGION_START,
    SE,
    SESS_LAM,
    SPR,
    STEP,
    TYPE_P,
    UK,
    VISIT,
    Campaign,
    World,
    group_first,
    local_seconds,
)

# Families whose events a bonus hunter's main-stream life does not emit (crm.simulator.abuse draws it).
HUNTER_DROPS = frozenset(("upd", "session", "bet", "pay", "wallet", "bonus", "limit", "reality", "exclusion", "crm"))
_INSTRUMENT_ET = np.array([ET[t] for t in INSTRUMENT_EVENTS], np.int16)

# How much of a player's response to a campaign is their lasting promo sensitivity (the correlation
# of the latent draw across campaigns), and how strongly it raises their take-up of offers (log scale).
PROMO_PERSISTENCE = 0.7
PROMO_TAKE_UP = 0.5


class Chunk:
    """One chunk of players: draws their lives and holds the events as column arrays."""

    def __init__(self, world: World, index: int, first: int, n: int):
        self.w, self.index, self.n = world, index, n
        self.rng = np.random.default_rng([world.seed, index])
        # a lasting trait (its own stream, so every other draw is the same as without it): how much a
        # player is drawn to promotions. It makes them respond alike to every campaign
        # (PROMO_PERSISTENCE) and shows in their bonus behaviour (take-up of reloads, cashback and
        # free spins, wagering bonuses through), as bonus-seeking players do.
        self.promo = np.random.default_rng([world.seed, index, 2]).standard_normal(n)
        self.pg = first + np.arange(n, dtype=np.int64)
        self.parts: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, dict]]] = {}
        self.camp_rows: list[dict[str, np.ndarray]] = []
        self._players()
        self._timeline()
        # identities and planted abuse: their own stream, values only (crm.simulator.abuse)
        self.ids = Identities(self)
        self._visits()
        self._consents_and_campaigns()
        self._activity()
        self._payments()
        self._bonuses()
        self._bets_and_sessions()
        self._rg_and_account()
        self.ids.hunt()
        self.abuse_truth = self.ids.truth()

    # ---------------------------------------------------------------- emit
    def emit(self, fam: str, et, ts: np.ndarray, p: np.ndarray, **cols) -> None:
        """Queue events of one family: event type(s), time (epoch s), player index, columns.

        The main stream's events of a bonus hunter are left out but for their registration and
        consents: their life is :meth:`crm.simulator.abuse.Identities.hunt`'s. Payments get the
        fingerprint of their instrument."""
        p = np.asarray(p, np.int64)
        if len(p) == 0:
            return
        et = np.broadcast_to(np.asarray(et, np.int16), p.shape)
        ts = np.broadcast_to(ts, p.shape)
        cols = {k: np.broadcast_to(np.asarray(v), p.shape) for k, v in cols.items()}
        if self.ids.dropping and fam in HUNTER_DROPS:
            keep = ~self.ids.hunter[p]
            if not keep.all():
                et, ts, p = et[keep], ts[keep], p[keep]
                cols = {k: v[keep] for k, v in cols.items()}
                if len(p) == 0:
                    return
        if fam == "pay":
            named = np.isin(et, _INSTRUMENT_ET)
            cols |= {"inst": np.where(named, self.ids.instrument(p, cols["psp"]), -1), "ipre": cols["method"]}
        self.parts.setdefault(fam, []).append((et, np.floor(ts).astype(np.int64), p, cols))

    def outside_block(self, p: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """True where the player is not self-excluded / cooling off at time ``ts``."""
        return ~((ts >= self.blk_lo[p]) & (ts < self.blk_hi[p]))

    # ---------------------------------------------------------------- players
    def _players(self) -> None:
        w, rng, n, D = self.w, self.rng, self.n, self.w.days
        self.brand = (rng.random(n) < 0.4).astype(np.int8)
        self.cc = rng.choice(5, n, p=COUNTRY_P).astype(np.int8)
        self.ptype = rng.choice(3, n, p=TYPE_P).astype(np.int8)
        self.minor = rng.random(n) < 0.003
        pre = rng.random(n) < 0.6
        rd = np.where(pre, -rng.integers(1, 731, n), rng.integers(0, D, n))
        rd = np.where(self.minor, rng.integers(-60, D, n), rd)
        young = rng.random(n) < 0.03
        age_end = np.where(young, rng.uniform(18.05, 24.0, n),
                           24.0 + np.minimum(rng.gamma(2.2, 9.0, n), 51.0))
        self.age_end = np.where(self.minor, rng.uniform(16.0, 17.95, n), age_end)
        self.birth_day = np.floor(D - self.age_end * 365.25).astype(np.int64)
        adult_day = self.birth_day + math.ceil(18 * 365.25) + 1
        rd = np.where(self.minor, rd, np.minimum(np.maximum(rd, adult_day), D - 1))
        reg = w.utc(self.cc, rd, local_seconds(rng, n))
        self.reg_ts = np.minimum(reg, w.end_ts - 3600.0)
        self.pre = self.reg_ts < w.start_ts
        self.region = REGION_START[self.cc] + (rng.random(n) * REGION_N[self.cc]).astype(np.int64)

        t = self.ptype
        self.h = HAZARD[t] * np.exp(rng.normal(0.0, 0.7, n))
        self.base = np.minimum(VISIT[t] * np.exp(rng.normal(-0.125, 0.5, n)), 0.95)
        self.spr = SPR[t] * np.exp(rng.normal(-0.18, 0.6, n))
        self.L = rng.uniform(10.0, 30.0, n)
        prefs = CAT_PREFS[rng.choice(3, n, p=(0.65, 0.20, 0.15))]
        self.cp0, self.cp1 = prefs[:, 0], prefs[:, 0] + prefs[:, 1]
        self.fav = np.stack([CAT_START[c] + rng.integers(0, CAT_N[c], n) for c in range(3)], axis=1)
        self.dev = rng.choice(3, n, p=(0.62, 0.28, 0.10))
        self.app = rng.random(n) < 0.45
        self.psp = rng.choice(5, n, p=(0.30, 0.20, 0.20, 0.15, 0.15))
        # expected stake per active day (EUR cents) at full engagement: for the truth tables
        per_game = (prefs * (1.0 + CAT_ROUNDS) * CAT_MULT).sum(axis=1)
        self.estake = (1 + SESS_LAM[t]) * (1 + GAMES_LAM[t]) * per_game * self.spr
        # KYC: minors never verify; a few new adults verify days after registering
        late = ~self.pre & ~self.minor & (rng.random(n) < 0.05)
        never = late & (rng.random(n) < 0.15)
        self.kyc_at_reg = ~(late | self.minor)
        self.verify_ts = np.where(late, self.reg_ts + rng.uniform(0.3, 10.0, n) * DAY, self.reg_ts)
        self.verify_ts[never | self.minor] = INF
        self.ok_ts = np.maximum(self.reg_ts, self.verify_ts)
        self.bonus_ok = ~self.minor & (self.cc != SE) & ~((self.cc == NL) & (self.age_end < 24))

    # ---------------------------------------------------------------- churn, limits, exclusions
    def _timeline(self) -> None:
        w, rng, n, D = self.w, self.rng, self.n, self.w.days
        rdf = (self.reg_ts - w.start_ts) / DAY
        self.t0 = np.maximum(rdf, 0.0)
        self.dormant = self.pre & (rng.random(n) < 0.35)
        T = self.t0 + rng.exponential(1.0, n) / self.h
        T = np.where(self.dormant, rdf * rng.random(n), T)

        # responsible-gambling limits (~5%)
        self.lim = ~self.minor & (rng.random(n) < 0.05)
        self.lim_kind = rng.choice(3, n, p=(0.6, 0.25, 0.15))
        eur = rng.choice(np.array([50, 100, 200, 500, 1000]), n)
        minutes = rng.choice(np.array([60, 120, 180, 240]), n)
        self.lim_value = np.where(self.lim_kind == 2, minutes,
                                  np.rint(eur * FX[self.cc]) * 100).astype(np.int64)
        at_reg = ~self.pre & (rng.random(n) < 0.4)
        lo = np.maximum(self.reg_ts, w.start_ts) + 3600.0
        self.lim_ts = np.where(at_reg, self.reg_ts + rng.uniform(300.0, 3600.0, n),
                               lo + rng.random(n) * (w.end_ts - 3600.0 - lo))
        self.lim &= (self.lim_ts > self.reg_ts) & (self.lim_ts < w.end_ts)

        # self-exclusion (~1.5%, more among limit setters) and cooling-off (~1.5%)
        se = ~self.minor & (rng.random(n) < np.where(self.lim, 0.04, 0.0133))
        co = ~self.minor & ~se & (rng.random(n) < 0.015)
        lo_d = np.maximum(rdf + 0.5, 0.25)
        hi_d = np.minimum(T, D)
        hi_d = np.where(hi_d - lo_d < 1.0, D, hi_d)
        x0 = np.minimum(lo_d + rng.random(n) * (hi_d - lo_d), D - 0.02)
        room = lo_d < D - 0.05
        se &= room
        co &= room
        start = w.start_ts + x0 * DAY
        durations = rng.choice(np.array([30, 60, 90, 180, 365, 1825]), n,
                               p=(0.2, 0.15, 0.15, 0.2, 0.2, 0.1))
        indefinite = se & (rng.random(n) < 0.25)
        until = np.where(se, start + durations * DAY, start + rng.integers(1, 43, n) * DAY)
        until = np.where(indefinite, INF, until)
        returns = np.where(se, rng.random(n) < 0.5, rng.random(n) < 0.8) & np.isfinite(until)
        lag = np.where(se, rng.uniform(1.0, 21.0, n), rng.uniform(0.0, 5.0, n))
        resume = until + lag * DAY
        blocked = se | co
        self.se, self.co, self.blocked = se, co, blocked
        self.se_scope = np.where(co, 2, (rng.random(n) < 0.45).astype(np.int64))  # brand/operator
        self.blk_lo = np.where(blocked, start, INF)
        self.blk_until = np.where(blocked, until, INF)
        self.blk_hi = np.where(blocked & returns, resume, INF)
        self.returns = blocked & returns
        x_res = np.where(self.returns, (resume - w.start_ts) / DAY, 0.0)
        T = np.where(blocked & ~returns, np.minimum(T, x0), T)
        late_T = self.returns & (T < x_res)
        T = np.where(late_T, x_res + rng.exponential(1.0, n) / self.h, T)
        self.T = T

    # ---------------------------------------------------------------- daily visit probability
    def _visits(self) -> None:
        w, D = self.w, self.w.days
        t = np.arange(D, dtype=np.float32)[None, :]
        T = self.T.astype(np.float32)[:, None]
        x = np.clip((T - t) / self.L.astype(np.float32)[:, None], 0.0, 1.0)
        ramp = np.where(t < T, 0.15 + 0.85 * x, 0.0)
        del x
        age = np.maximum(t - self.t0.astype(np.float32)[:, None], 0.0)
        decay = np.exp(-0.3 * self.h.astype(np.float32)[:, None] * age)
        del age
        ok_day = np.floor((self.ok_ts - w.start_ts) / DAY).astype(np.float32)[:, None]
        lo_d = ((self.blk_lo - w.start_ts) / DAY).astype(np.float32)[:, None]
        hi_d = ((self.blk_hi - w.start_ts) / DAY).astype(np.float32)[:, None]
        self.allowed = (t >= ok_day) & ~((t + 1.0 > lo_d) & (t < hi_d))
        p = (self.base.astype(np.float32)[:, None] * w.weekday[None, :]) * decay * ramp
        self.p = np.where(self.allowed, np.minimum(p, 0.97), 0.0).astype(np.float32)
        self.dep_mult = np.ones((self.n, D), np.float32)

    def _engagement(self, p: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Fraction of full engagement (1 -> 0 over the last L days before churn)."""
        return np.clip((self.T[p] - day) / self.L[p], 0.0, 1.0)

    # ---------------------------------------------------------------- consents + past campaigns
    def _consents_and_campaigns(self) -> None:
        """Consents per channel, the past campaigns (their unsubscribes and complaints withdraw
        a channel), then the consent events (none after a withdrawal). Draws in this order."""
        g0, c1, c2 = self._consent_draws()
        block = np.full((self.n, len(CHANNELS)), INF)  # unsubscribe / complaint time per channel
        bonuses = [b for k, cp in enumerate(self.w.campaigns)
                   if (b := self._past_campaign(k, cp, g0, c1, c2, block)) is not None]
        # campaign bonuses: (player, time, template, cost in local minor units, campaign)
        self.camp_bonus = tuple(np.concatenate([b[i] for b in bonuses]) if bonuses else np.zeros(0, np.int64)
                                for i in range(5))
        self._consent_events(g0, c1, c2, block)
        self.g0, self.c1, self.c2, self.block = g0, c1, c2, block

    def _consent_draws(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Consent at registration per channel, and up to two later changes (time, or INF)."""
        w, rng, n = self.w, self.rng, self.n
        nc = len(CONSENT_CHANNELS)
        g0 = rng.random((n, nc)) < CONSENT_P
        lo = np.maximum(self.reg_ts + DAY, w.start_ts)
        span = w.end_ts - lo
        has1 = (rng.random((n, nc)) < 0.06) & (span > DAY)[:, None]
        c1v = lo[:, None] + rng.random((n, nc)) * span[:, None]
        has2 = has1 & (rng.random((n, nc)) < 0.3)
        c2v = c1v + rng.random((n, nc)) * (w.end_ts - c1v)
        return g0, np.where(has1, c1v, INF), np.where(has2, c2v, INF)

    def _past_campaign(self, k: int, cp: Campaign, g0: np.ndarray, c1: np.ndarray, c2: np.ndarray,
                       block: np.ndarray) -> tuple[np.ndarray, ...] | None:
        """One past campaign: who was eligible and selected, its holdout, each player's true
        effect (applied to treated players' behaviour), the feedback events; returns its
        bonuses (player, time, template, cost, campaign) or None for a message-only campaign."""
        w, rng, n = self.w, self.rng, self.n
        ch = cp.channel
        send = w.start_ts + cp.day * DAY + 9 * 3600.0 + rng.random(n) * 3 * 3600.0
        consent = g0[:, ch] ^ (send >= c1[:, ch]) ^ (send >= c2[:, ch])
        elig = ((self.ok_ts < send - DAY) & ~self.minor & self.outside_block(np.arange(n), send)
                & consent & (block[:, ch] > send))
        sel = elig & (rng.random(n) < 0.7)
        ctrl = rng.random(n) < 0.2
        u = rng.random(n)
        # the response type leans on the player's lasting promo sensitivity (high: a positive
        # responder more often, low: a negative one), the rest drawn anew for each campaign
        u = ndtr(-PROMO_PERSISTENCE * self.promo + math.sqrt(1.0 - PROMO_PERSISTENCE ** 2) * ndtri(u))
        lapsing = (self.T - cp.day) < (self.L + 7.0)
        p_pos = np.clip(0.28 + 0.22 * lapsing + 0.08 * (self.ptype == 1) - 0.12 * (self.ptype == 2),
                        0.05, 0.9)
        p_neg = np.clip(0.06 + 0.12 * (self.ptype == 2) + 0.04 * (ch == 1)
                        + 0.05 * (self.age_end < 24), 0.0, 0.5)
        rtype = np.where(u < p_pos, 1, np.where(u > 1.0 - p_neg, 2, 0))

        idx = np.nonzero(sel)[0]
        d0, d1 = cp.day, min(cp.day + 7, w.days)
        days = np.arange(d0, d1)
        P0 = self.p[idx, d0:d1].astype(np.float64)
        Tm = self.T[idx][:, None]
        churned = (days[None, :] >= Tm) & self.allowed[idx, d0:d1]
        pos, neg = rtype[idx] == 1, rtype[idx] == 2
        P1 = P0.copy()
        P1[pos] = np.where(churned[pos], np.maximum(1 - (1 - P0[pos]) ** 2.2, 0.03),
                           1 - (1 - P0[pos]) ** 2.2)
        P1[neg] *= 0.6
        mult = np.where(pos, 1.6, np.where(neg, 0.6, 1.0))[:, None]
        dep0 = np.minimum(DEP_P[self.ptype[idx]][:, None] * self.dep_mult[idx, d0:d1], 0.95)
        dep1 = np.minimum(dep0 * mult, 0.95)
        q0 = 1 - np.prod(1 - P0 * dep0 * 0.92, axis=1)
        q1 = 1 - np.prod(1 - P1 * dep1 * 0.92, axis=1)
        sf = 0.5 + 0.5 * np.clip((Tm - days[None, :]) / self.L[idx][:, None], 0.0, 1.0)
        ggr = 0.04 * self.estake[idx][:, None] * sf
        with_bonus = self.bonus_ok[idx] & (cp.template >= 0)
        eff_ngr = ((P1 - P0) * ggr).sum(axis=1) - cp.cost_eur * with_bonus
        treated = ~ctrl[idx]
        self.camp_rows.append({
            "campaign": np.full(len(idx), k), "p": idx, "control": ctrl[idx], "sent": send[idx],
            "rtype": rtype[idx], "q0": q0, "q1": q1, "eff_ngr": eff_ngr,
        })
        # the effect changes behaviour of treated players only
        ti = idx[treated]
        self.p[ti, d0:d1] = P1[treated].astype(np.float32)
        self.dep_mult[ti, d0:d1] *= mult[treated].astype(np.float32)
        self._feedback(k, ch, ti, rtype[ti], send[ti], block)
        if cp.template < 0:
            return None
        b = with_bonus[treated]
        m = int(b.sum())
        return (ti[b], send[ti][b] + rng.uniform(5.0, 60.0, m), np.full(m, cp.template),
                np.rint(cp.cost_eur * FX[self.cc[ti[b]]]).astype(np.int64), np.full(m, k))

    def _feedback(self, k: int, ch: int, ti: np.ndarray, rt: np.ndarray, s: np.ndarray,
                  block: np.ndarray) -> None:
        """Delivery, bounce, open, click, unsubscribe and complaint events of the treated
        players ``ti`` (responder types ``rt``, send times ``s``); withdrawals go to ``block``."""
        rng, m = self.rng, len(ti)
        email = ch == 0
        bounce = rng.random(m) < (0.02 if email else 0.01)
        open_p = (np.array([0.20, 0.30, 0.15]) if email else np.array([0.07, 0.12, 0.05]))[rt]
        open_ts = s + 60.0 + np.minimum(rng.lognormal(np.log(1.5 * 3600), 1.0, m), 5 * DAY)
        opened = ~bounce & (rng.random(m) < open_p) & self._ok(ti, open_ts)
        click_ts = open_ts + rng.uniform(5.0, 300.0, m)
        click = opened & (rng.random(m) < np.array([0.15, 0.30, 0.10])[rt]) & self._ok(ti, click_ts)
        unsub_ts = open_ts + rng.uniform(10.0, 600.0, m)
        unsub = opened & (rng.random(m) < np.array([0.02, 0.01, 0.15])[rt]) & self._ok(ti, unsub_ts)
        comp_ts = s + rng.uniform(3600.0, 72 * 3600.0, m)
        comp = (email & ~bounce & (rng.random(m) < np.array([0.002, 0.001, 0.02])[rt])
                & self._ok(ti, comp_ts))
        bounce_ts = s + rng.uniform(5.0, 120.0, m)
        for et, mask, ts in (("crm.delivery", slice(None), s), ("crm.bounce", bounce, bounce_ts),
                             ("crm.open", opened, open_ts), ("crm.click", click, click_ts),
                             ("crm.unsubscribe", unsub, unsub_ts), ("crm.complaint", comp, comp_ts)):
            self.emit("crm", ET[et], ts[mask], ti[mask], campaign=k, channel=ch)
        stop = np.minimum(np.where(unsub, unsub_ts, INF), np.where(comp, comp_ts, INF))
        block[ti, ch] = np.minimum(block[ti, ch], stop)

    def _consent_events(self, g0: np.ndarray, c1: np.ndarray, c2: np.ndarray, block: np.ndarray) -> None:
        """Consent events: at registration, then changes (none after an unsubscribe / complaint)."""
        pp, cc_ = np.nonzero(g0)
        self.emit("consent", ET["consent.granted"], self.reg_ts[pp] + 1 + cc_, pp,
                  channel=cc_, source=0)
        stop = np.concatenate([block, np.full((self.n, 1), INF)], axis=1)
        for chg, first in ((c1, True), (c2, False)):
            pp, cc_ = np.nonzero(np.isfinite(chg) & (chg < stop))
            granted = ~g0[pp, cc_] if first else g0[pp, cc_]
            et = np.where(granted, ET["consent.granted"], ET["consent.revoked"])
            src = np.where(self.rng.random(len(pp)) < 0.85, 1, 2)
            self.emit("consent", et, chg[pp, cc_], pp, channel=cc_, source=src)

    def _ok(self, p: np.ndarray, ts: np.ndarray) -> np.ndarray:
        return (ts < self.w.end_ts) & self.outside_block(p, ts)

    # ---------------------------------------------------------------- active days and sessions
    def _activity(self) -> None:
        w, rng, D = self.w, self.rng, self.w.days
        active = rng.random((self.n, D), dtype=np.float32) < self.p
        del self.p
        ap, ad = np.nonzero(active)
        del active
        A = len(ap)
        typ = self.ptype[ap]
        ns = 1 + rng.poisson(SESS_LAM[typ])
        s_ad = np.repeat(np.arange(A), ns)
        s_p = ap[s_ad]
        S = len(s_ad)
        ng = 1 + rng.poisson(GAMES_LAM[self.ptype[s_p]])
        g_s = np.repeat(np.arange(S), ng)
        g_p = s_p[g_s]
        G = len(g_s)
        # games: category, game, rounds, stake, win, duration
        u = rng.random(G)
        cat = (u >= self.cp0[g_p]).astype(np.int64) + (u >= self.cp1[g_p])
        rand_game = CAT_START[cat] + (rng.random(G) * CAT_N[cat]).astype(np.int64)
        game = np.where(rng.random(G) < 0.6, self.fav[g_p, cat], rand_game)
        rounds = 1 + rng.poisson(CAT_ROUNDS[cat] * rng.gamma(2.0, 0.5, G))
        g_day = ad[s_ad[g_s]]
        sf = 0.5 + 0.5 * self._engagement(g_p, g_day)
        stake_eur = rounds * self.spr[g_p] * CAT_MULT[cat] * sf * rng.lognormal(-0.045, 0.3, G)
        stake = np.maximum(1, np.rint(stake_eur * FX[self.cc[g_p]])).astype(np.int64)
        k = rounds / CAT_VOL[cat] ** 2
        win = np.rint(stake * rng.gamma(k, 0.96 / k)).astype(np.int64)
        g_dur = rounds * CAT_SEC[cat] * rng.lognormal(0.0, 0.25, G)
        s_dur = np.floor(np.bincount(g_s, g_dur, minlength=S) + rng.uniform(30.0, 400.0, S))
        # session start times: first session of the day at a local time, then gaps
        first = w.utc(self.cc[ap], ad, local_seconds(rng, A))
        lb = np.maximum(w.start_ts, self.ok_ts[ap]) + 600.0
        first = np.where(first < lb, lb + rng.uniform(0.0, 3600.0, A), first)
        inc = s_dur + 900.0 + rng.exponential(3 * 3600.0, S)
        cum = np.cumsum(inc) - inc
        gf = group_first(ns)
        s_start = np.floor(first[s_ad] + cum - cum[gf])
        lo, hi = s_start - 400.0, s_start + s_dur + 900.0
        keep = (hi < w.end_ts) & ~((hi > self.blk_lo[s_p]) & (lo < self.blk_hi[s_p]))

        # drop sessions that would cross the period end or an exclusion, then re-index
        gk = keep[g_s]
        s_remap = np.cumsum(keep) - 1
        self.g_s = s_remap[g_s[gk]]
        self.g_cat, self.g_game, self.g_rounds = cat[gk], game[gk], rounds[gk]
        self.g_stake, self.g_win, self.g_dur = stake[gk], win[gk], g_dur[gk]
        self.g_p = g_p[gk]
        ad_has = np.bincount(s_ad[keep], minlength=A) > 0
        a_remap = np.cumsum(ad_has) - 1
        self.s_ad = a_remap[s_ad[keep]]
        self.s_p, self.s_start, self.s_dur = s_p[keep], s_start[keep], s_dur[keep]
        self.a_p, self.a_day = ap[ad_has], ad[ad_has]
        A = len(self.a_p)
        self.a_ns = np.bincount(self.s_ad, minlength=A)
        self.a_first = np.cumsum(self.a_ns) - self.a_ns
        s_end = self.s_start + self.s_dur
        self.a_last_end = (np.maximum.reduceat(s_end, self.a_first) if A else np.zeros(0))
        self.a_key = self.a_p * D + self.a_day
        self.g_ad = self.s_ad[self.g_s]
        self.a_net = np.bincount(self.g_ad, (self.g_win - self.g_stake).astype(np.float64), minlength=A)

    def _random_session(self, ad: np.ndarray) -> np.ndarray:
        """A random session of each given active day."""
        return self.a_first[ad] + (self.rng.random(len(ad)) * self.a_ns[ad]).astype(np.int64)

    # ---------------------------------------------------------------- payments
    def _payments(self) -> None:
        rng = self.rng
        A, ap, aday = len(self.a_p), self.a_p, self.a_day
        cc = self.cc[ap]
        first_of_p = np.r_[True, ap[1:] != ap[:-1]] if A else np.zeros(0, bool)
        p_dep = np.minimum(DEP_P[self.ptype[ap]] * self.dep_mult[ap, aday], 0.95)
        p_dep = np.where(first_of_p & ~self.pre[ap], 0.9, p_dep)
        del self.dep_mult
        n_att = (rng.random(A) < p_dep) * (1 + rng.poisson(0.15, A))
        att_ad = np.repeat(np.arange(A), n_att)
        sess = self._random_session(att_ad)
        t = self.s_start[sess] - rng.uniform(20.0, 300.0, len(att_ad))
        q = self.a_p[att_ad]
        units = (DEP_EUR[self.ptype[q]] * np.exp(rng.normal(0.0, 0.5, len(q)))
                 * (0.6 + 0.4 * self._engagement(q, aday[att_ad])) * FX[self.cc[q]])
        step = STEP[self.cc[q]]
        amount = np.maximum(2 * step, np.rint(units / step) * step).astype(np.int64) * 100
        fail = rng.random(len(q)) < 0.08
        retry = fail & (rng.random(len(q)) < 0.4)
        # retried attempts: a new intent a few minutes later
        q = np.concatenate([q, q[retry]])
        t = np.concatenate([t, t[retry] + rng.uniform(60.0, 400.0, int(retry.sum()))])
        amount = np.concatenate([amount, amount[retry]])
        att_ad = np.concatenate([att_ad, att_ad[retry]])
        fail = np.concatenate([fail, rng.random(int(retry.sum())) < 0.08])
        n = len(q)
        psp = np.where(rng.random(n) < 0.9, self.psp[q], rng.integers(0, 5, n))
        method = PSP_METHOD[psp]
        tr = np.arange(n)
        reason = rng.choice(5, n, p=(0.3, 0.3, 0.2, 0.1, 0.1))
        ok = ~fail
        cols = dict(amount=amount, psp=psp, method=method, tr=tr, reason=-1)
        self.emit("pay", ET["payment.intent"], t, q, **cols)
        self.emit("pay", ET["payment.failed"], t[fail] + rng.uniform(2.0, 40.0, int(fail.sum())),
                  q[fail], **{k: (v[fail] if np.ndim(v) else v) for k, v in cols.items()}
                  | {"reason": reason[fail]})
        oc = {k: (v[ok] if np.ndim(v) else v) for k, v in cols.items()}
        m = int(ok.sum())
        self.emit("pay", ET["payment.authorized"], t[ok] + rng.uniform(1.0, 8.0, m), q[ok], **oc)
        cap_ts = t[ok] + rng.uniform(10.0, 60.0, m)
        self.emit("pay", ET["payment.captured"], cap_ts, q[ok], **oc)
        # captured deposits feed bonuses
        self.dep = dict(p=q[ok], ts=cap_ts, amount=amount[ok], ad=att_ad[ok], tr=tr[ok],
                        psp=psp[ok])
        # a few refunds, days later
        rf = rng.random(m) < 0.003
        rts = cap_ts[rf] + rng.uniform(1.0, 10.0, int(rf.sum())) * DAY
        rq = q[ok][rf]
        good = self._ok(rq, rts)
        self.emit("pay", ET["payment.refund"], rts[good], rq[good], amount=amount[ok][rf][good],
                  psp=psp[ok][rf][good], method=method[ok][rf][good], tr=tr[ok][rf][good],
                  reason=5 + rng.integers(0, 3, int(good.sum())))
        # withdrawals by winners at the end of the day's play
        thr = 30.0 * FX[cc] * 100
        wd = (self.a_net > thr) & (rng.random(A) < 0.5)
        step = STEP[cc[wd]] * 100
        wamt = (np.floor(self.a_net[wd] * rng.uniform(0.5, 1.0, int(wd.sum())) / step) * step)
        wamt = wamt.astype(np.int64)
        wq = ap[wd]
        wp = self.psp[wq]
        good = wamt > 0
        self.emit("pay", ET["payment.withdraw"],
                  self.a_last_end[wd][good] + rng.uniform(60.0, 600.0, int(good.sum())), wq[good],
                  amount=wamt[good], psp=wp[good], method=PSP_METHOD[wp[good]],
                  tr=n + np.arange(int(good.sum())), reason=-1)
        self.tr_next = n + int(good.sum())
        # occasional wallet adjustments inside a session
        for et, prob, reasons, lo_eur, hi_eur in (("wallet.credit", 0.02, (0, 1, 2, 3), 1, 50),
                                                  ("wallet.debit", 0.006, (4, 5), 1, 20)):
            sel = np.nonzero(rng.random(A) < prob)[0]
            s = self._random_session(sel)
            wq = ap[sel]
            amt = (rng.integers(lo_eur, hi_eur + 1, len(sel)) * FX[self.cc[wq]]).round() * 100
            self.emit("wallet", ET[et], self.s_start[s] + self.s_dur[s] - rng.uniform(1.0, 20.0, len(s)),
                      wq, amount=np.maximum(amt, 100).astype(np.int64),
                      reason=rng.choice(np.array(reasons), len(sel)), sid=s)

    # ---------------------------------------------------------------- bonuses
    def _bonuses(self) -> None:
        w, rng, D, n = self.w, self.rng, self.w.days, self.n
        dep = self.dep
        order = np.lexsort((dep["ts"], dep["p"]))
        dp, dts, damt = dep["p"][order], dep["ts"][order], dep["amount"][order]
        first = np.r_[True, dp[1:] != dp[:-1]] if len(dp) else np.zeros(0, bool)
        ok = self.bonus_ok[dp]
        fx = FX[self.cc[dp]]
        # welcome bonus on the first deposit (allowed in SE: first occasion; not NL under 24)
        welcome_ok = ~self.minor[dp] & ~((self.cc[dp] == NL) & (self.age_end[dp] < 24))
        welcome = first & ~self.pre[dp] & welcome_ok & (rng.random(len(dp)) < 0.75)
        promo = np.exp(PROMO_TAKE_UP * self.promo)  # a promo-sensitive player takes up more offers
        reload = ~first & ok & (rng.random(len(dp)) < 0.05 * promo[dp])
        cap_w = np.rint(10000 * fx)
        cap_r = np.rint(5000 * fx)
        b_p = [dp[welcome], dp[reload]]
        b_ts = [dts[welcome] + rng.uniform(5.0, 60.0, int(welcome.sum())),
                dts[reload] + rng.uniform(5.0, 60.0, int(reload.sum()))]
        b_tmpl = [np.zeros(int(welcome.sum()), np.int64), np.ones(int(reload.sum()), np.int64)]
        b_cost = [np.minimum(damt[welcome], cap_w[welcome]),
                  np.minimum(np.rint(damt[reload] * 0.5), cap_r[reload])]
        # cashback after a losing day, free spins now and then
        A = len(self.a_p)
        aq = self.a_p
        loss_thr = 5000.0 * FX[self.cc[aq]]
        cb = self.bonus_ok[aq] & (-self.a_net > loss_thr) & (rng.random(A) < 0.06 * promo[aq])
        b_p.append(aq[cb])
        b_ts.append(self.a_last_end[cb] + rng.uniform(60.0, 800.0, int(cb.sum())))
        b_tmpl.append(np.full(int(cb.sum()), 2))
        b_cost.append(np.rint(-self.a_net[cb] * 0.1))
        fs = np.nonzero(self.bonus_ok[aq] & (rng.random(A) < 0.02 * promo[aq]))[0]
        s = self._random_session(fs)
        b_p.append(aq[fs])
        b_ts.append(self.s_start[s] + rng.uniform(10.0, 60.0, len(fs)))
        b_tmpl.append(np.full(len(fs), 3))
        b_cost.append(np.rint(rng.choice(np.array([200, 500, 1000]), len(fs)) * FX[self.cc[aq[fs]]]))
        cp_p, cp_ts, cp_tmpl, cp_cost, cp_camp = self.camp_bonus
        b_p.append(cp_p)
        b_ts.append(cp_ts)
        b_tmpl.append(cp_tmpl)
        b_cost.append(cp_cost)
        camp = np.concatenate([np.full(sum(len(x) for x in b_p[:-1]), -1), cp_camp]).astype(np.int64)
        bp = np.concatenate(b_p).astype(np.int64)
        bts = np.concatenate(b_ts)
        tmpl = np.concatenate(b_tmpl).astype(np.int64)
        cost = np.maximum(np.concatenate(b_cost), 1).astype(np.int64)
        uk = self.cc[bp] == UK
        wagering = np.where(uk, np.where(tmpl == 2, 1, 10), np.array([35, 30, 1, 20])[tmpl])
        offer = np.where(camp >= 0, 4 + camp, tmpl)
        nb = self.bid_next = len(bp)
        bid = np.arange(nb)
        cols = dict(template=tmpl, offer=offer, cost=cost, wagering=wagering, campaign=camp, bid=bid)
        self.emit("bonus", ET["bonus.issued"], bts, bp, **cols)
        # consumed on the next active day within 7 days (80%), else expired after 7 days
        iday = np.floor((bts - w.start_ts) / DAY).astype(np.int64)
        nxt = self._next_active_day()
        nd = nxt[bp, np.minimum(iday + 1, D)]
        used = (nd <= iday + 7) & (nd < D) & (rng.random(nb) < np.clip(0.8 + 0.12 * self.promo[bp], 0.4, 0.98))
        ua = np.searchsorted(self.a_key, bp[used] * D + nd[used])
        s = self.a_first[ua]
        uts = self.s_start[s] + rng.uniform(0.1, 0.9, len(s)) * self.s_dur[s]
        self.emit("bonus", ET["bonus.consumed"], uts, bp[used],
                  **{k: v[used] for k, v in cols.items()})
        ets = bts + 7 * DAY
        exp = ~used & self._ok(bp, ets)
        self.emit("bonus", ET["bonus.expired"], ets[exp], bp[exp], **{k: v[exp] for k, v in cols.items()})
        # days with an active bonus: bets are in_bonus there
        end_day = np.where(used, nd, np.minimum(iday + 7, D - 1))
        diff = np.zeros((n, D + 1), np.int16)
        np.add.at(diff, (bp, iday), 1)
        np.add.at(diff, (bp, end_day + 1), -1)
        self.bonus_days = np.cumsum(diff, axis=1, dtype=np.int16)[:, :D] > 0

    def _next_active_day(self) -> np.ndarray:
        D = self.w.days
        idx = np.full((self.n, D + 1), D, np.int16)
        idx[self.a_p, self.a_day] = self.a_day
        return np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]

    # ---------------------------------------------------------------- sessions and bets
    def _bets_and_sessions(self) -> None:
        rng = self.rng
        S, G = len(self.s_p), len(self.g_s)
        sid = np.arange(S)
        dev = np.where(rng.random(S) < 0.85, self.dev[self.s_p], rng.choice(3, S, p=(0.62, 0.28, 0.10)))
        chan = ((dev != 1) & self.app[self.s_p]).astype(np.int64)
        self.session_events(sid, self.s_start, self.s_dur, self.s_p, dev, chan)
        # one bet.settled per game, at the end of the game
        ng = np.bincount(self.g_s, minlength=S)
        cg = np.cumsum(self.g_dur)
        ex = cg - self.g_dur
        within = cg - ex[group_first(ng)]
        g_ts = self.s_start[self.g_s] + 15.0 + within
        in_bonus = self.bonus_days[self.g_p, self.a_day[self.g_ad]] & (rng.random(G) < 0.8)
        del self.bonus_days
        provider = GAME_PROVIDER[self.g_game]
        cols = dict(stake=self.g_stake, win=self.g_win, in_bonus=in_bonus, provider=provider,
                    game=self.g_game, category=self.g_cat, rounds=self.g_rounds, sid=self.g_s)
        self.emit("bet", ET["bet.settled"], g_ts, self.g_p, **cols)
        # rarely a bet.placed at the start of a live / table game (stake repeated, win 0)
        pl = (self.g_cat > 0) & (rng.random(G) < 0.02)
        self.emit("bet", ET["bet.placed"], g_ts[pl] - self.g_dur[pl], self.g_p[pl],
                  **({k: v[pl] for k, v in cols.items()} | {"win": 0, "in_bonus": in_bonus[pl]}))

    def session_events(self, sid: np.ndarray, start: np.ndarray, dur: np.ndarray, p: np.ndarray,
                       dev: np.ndarray, chan: np.ndarray) -> None:
        """session.started and session.ended of sessions ``sid``, a reality check every hour of play."""
        self.emit("session", ET["session.started"], start, p, sid=sid, device=dev, chan=chan, dur=-1)
        self.emit("session", ET["session.ended"], start + dur, p, sid=sid, device=dev, chan=chan,
                  dur=dur.astype(np.int64))
        n_rc = np.minimum(dur // 3600, 4).astype(np.int64)
        rs = np.repeat(np.arange(len(sid)), n_rc)
        j = np.arange(len(rs)) - group_first(n_rc) + 1
        self.emit("reality", ET["rg.reality_check"], start[rs] + 3600.0 * j, p[rs], minutes=60 * j,
                  sid=sid[rs])

    # ---------------------------------------------------------------- registration, RG, account
    def _rg_and_account(self) -> None:
        w, rng, n = self.w, self.rng, self.n
        allp = np.arange(n)
        phone = rng.integers(10**8, 10**9, n)
        device, ip = rng.integers(10**9, 10**10, n), rng.integers(0, 2**24, n)
        self.emit("reg", ET["player.registered"], self.reg_ts, allp,
                  country=self.cc, region=self.region, locale=self.cc, tz=self.cc, dial=self.cc,
                  birth=self.birth_day, phone=phone, kyc=self.kyc_at_reg, **self.ids.registration(device, ip))
        # player.updated: late KYC, e-mail changes
        kyc = ~self.kyc_at_reg & np.isfinite(self.verify_ts) & (self.verify_ts < w.end_ts)
        self.emit("upd", ET["player.updated"], self.verify_ts[kyc], allp[kyc], kind=0)
        lo = np.maximum(self.reg_ts, w.start_ts) + DAY
        ets = lo + rng.random(n) * (w.end_ts - lo)
        em = (rng.random(n) < 0.015) & (ets < w.end_ts) & (ets > lo) & self.outside_block(allp, ets)
        self.emit("upd", ET["player.updated"], ets[em], allp[em], kind=1)
        # limits and limit hits (in a session after the limit was set)
        lim = self.lim & self.outside_block(allp, self.lim_ts)
        self.emit("limit", ET["rg.limit.set"], self.lim_ts[lim], allp[lim], kind=self.lim_kind[lim],
                  value=self.lim_value[lim], sid=-1)
        sel = np.nonzero(lim[self.a_p] & (rng.random(len(self.a_p)) < 0.12))[0]
        s = self._random_session(sel)
        hts = self.s_start[s] + rng.uniform(0.2, 0.9, len(s)) * self.s_dur[s]
        q = self.a_p[sel]
        ok = hts > self.lim_ts[q]
        self.emit("limit", ET["rg.limit.hit"], hts[ok], q[ok], kind=self.lim_kind[q[ok]],
                  value=self.lim_value[q[ok]], sid=s[ok])
        # self-exclusions and cooling-off periods
        b = np.nonzero(self.blocked)[0]
        until = self.blk_until[b]
        self.emit("exclusion", ET["rg.self_exclusion.started"], self.blk_lo[b], b,
                  scope=self.se_scope[b], until=until)
        ended = np.isfinite(until) & (until + 600.0 < w.end_ts)
        self.emit("exclusion", ET["rg.self_exclusion.ended"],
                  until[ended] + rng.uniform(0.0, 600.0, int(ended.sum())), b[ended],
                  scope=self.se_scope[b[ended]], until=INF)


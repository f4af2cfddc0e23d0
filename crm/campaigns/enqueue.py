"""A dispatched list's messages into the delivery queue: the batch path uses the API's delivery path.

:func:`crm.campaigns.dispatch.dispatch_list` writes the date's outbox file (the record of what
was dispatched, which history, budgets and readouts read) and then calls :func:`enqueue_outbox`,
which queues every message of that file as a delivery (source ``batch``) that the delivery worker
sends (:mod:`crm.store.queue`, ``crm deliveries work``, ``crm serve``). Exactly once:

* the delivery id is a function of the message's idempotency key (campaign, as-of date, player,
  channel), and a message already queued is left alone: a dispatch that dies between the outbox
  and the queue, or runs again, queues what is missing and nothing twice;
* the worker claims each delivery under a lease and records its result guarded by the attempt.

The message's template is ``templates/<campaign id>.yaml`` when there is one, else the offer's
(``bonus``, ``cashback``, ``free_spins``); its parameters are the offer's terms and the brand's
name and site (``CRM_BRAND_SITE_<BRAND>``, default ``https://<brand>.example``). Each delivery
records its basis: the player's consent for the channel (version, source, time) from the
warehouse the list was built on, the list (manifest digest) and the campaign version.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re

import sqlalchemy as sa

from crm.campaigns.spec import CampaignSpec, Offer
from crm.channels.templates import TemplateStore
from crm.config import Paths
from crm.contract import consent_column
from crm.store import deliveries as dl
from crm.store.db import make_engine, upgrade_to_head
from crm.store.schema import deliveries

_CHUNK = 500


def delivery_id_for(idempotency_key: str) -> str:
    """The delivery id of a dispatched message: ``b_`` + 40 hex of its idempotency key's sha256."""
    return "b_" + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]


def message_template(spec: CampaignSpec, templates: TemplateStore | None = None, offer: Offer | None = None) -> str:
    """The template of a campaign's message: the campaign's own (named by its id) if there is one,
    else its offer's (``offer``: the player's choice of an offer chosen per player)."""
    store = templates or TemplateStore()
    template = (offer or spec.offer).template
    return spec.id if spec.id in store.ids() or template == "none" else template


def message_offer(spec: CampaignSpec, message: dict) -> Offer:
    """The offer of one message: the campaign's, or the message's choice (``offer_name``) of an
    offer chosen per player; a choice the campaign does not have is an error (never guessed)."""
    if not spec.offer.choices:
        return spec.offer
    name = message.get("offer_name")
    if name not in spec.offer.choices:
        raise ValueError(f"campaign {spec.id}: the message to {message.get('player_id')!r} names offer "
                         f"{str(name)[:60]!r}, not one of its choices ({', '.join(spec.offer.choices)})")
    return spec.offer.choices[name].offer


def brand_site(brand_id: str) -> str:
    key = "CRM_BRAND_SITE_" + re.sub(r"[^A-Za-z0-9]", "_", brand_id).upper()
    return (os.environ.get(key) or f"https://{re.sub(r'[^a-z0-9-]', '-', brand_id.lower())}.example").rstrip("/")


def message_params(spec: CampaignSpec, brand_id: str, offer: Offer | None = None) -> dict:
    """The template parameters of a campaign's message to a player of ``brand_id``: offer terms only
    (``offer``: the player's own of an offer chosen per player)."""
    site = brand_site(brand_id)
    o = offer or spec.offer
    return {"brand_name": brand_id, "claim_url": f"{site}/promotions", "help_url": f"{site}/help/payments",
            "value_eur": o.value_eur, "cashback_percent": o.percent, "match_percent": o.percent, "cap_eur": o.cap_eur,
            "wager_eur": o.wager_eur, "wagering": o.wagering, "expiry_days": o.expiry_days}


def _text(v) -> str:
    """A list value as template text: missing (None, NaN) as "" (a template tests it with ``{% if %}``)."""
    return "" if v is None or (isinstance(v, float) and v != v) else str(v)


def _consents(paths: Paths, channel: str, player_ids: list[str]) -> dict[str, dict]:
    """The players' consent on ``channel`` in the warehouse (the basis the list was built on)."""
    if not paths.warehouse.exists() or not player_ids:
        return {}
    import pandas as pd

    from crm.sql import ident
    from crm.warehouse import connect

    col = consent_column(channel)
    with connect(paths) as con:
        names = {r[0] for r in con.execute("DESCRIBE dim_player").fetchall()}
        wanted = [c for c in (col, f"{col}_version", f"{col}_source", f"{col}_changed_at") if c in names]
        if col not in wanted:
            return {}
        con.register("_ids", pd.DataFrame({"player_id": player_ids}))
        rows = con.execute(f"SELECT player_id, {', '.join(ident(c) for c in wanted)} FROM dim_player "
                           "JOIN _ids USING (player_id)").fetchall()
    keys = ["consent", "consent_version", "consent_source", "consent_changed_at"][:len(wanted)]
    return {str(r[0]): {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in zip(keys, r[1:],
                                                                                                   strict=True)}
            for r in rows}


def enqueue_outbox(paths: Paths, spec: CampaignSpec, messages: list[dict], brands: dict[str, str], *,
                   list_sha256: str = "", spec_hash: str = "", engine: sa.Engine | None = None) -> int:
    """Queue each of ``messages`` (the date's outbox file) not yet queued; returns how many were new.
    ``brands``: player id -> brand id (the list's rows)."""
    if not messages:
        return 0
    own = engine is None
    engine = engine or make_engine(paths)
    try:
        if own:
            upgrade_to_head(engine)
        ids = {delivery_id_for(m["idempotency_key"]): m for m in messages}
        known: set[str] = set()
        with engine.connect() as conn:
            keys = list(ids)
            for i in range(0, len(keys), _CHUNK):
                known |= {r[0] for r in conn.execute(sa.select(deliveries.c.delivery_id).where(
                    deliveries.c.delivery_id.in_(keys[i:i + _CHUNK])))}
        todo = {k: m for k, m in ids.items() if k not in known}
        if not todo:
            return 0
        store, template_of = TemplateStore(), {}  # offer template -> message template (a lookup lists the folder)
        consents = _consents(paths, spec.channel, sorted({str(m["player_id"]) for m in todo.values()}))
        new: list[dl.NewDelivery] = []
        for delivery_id, m in todo.items():
            pid = str(m["player_id"])
            brand = str(brands.get(pid) or "")
            basis = {"channel": m["channel"], "product": spec.product, **consents.get(pid, {}),
                     "campaign": spec.id, "campaign_version": spec_hash, "list_sha256": list_sha256,
                     "as_of_date": m["as_of_date"], "rules": "passed the list's rule table, its gate and the "
                                                             "send-time stop check"}
            if spec.transactional:
                basis["transactional"] = "a transactional campaign: caps, cooldown and quiet hours do not apply"
            sent_at = dt.datetime.fromisoformat(str(m["sent_at"]).replace("Z", "+00:00")).replace(tzinfo=None)
            offer = message_offer(spec, m)
            if spec.offer.choices:
                basis["offer"] = m.get("offer_name")
            if offer.template not in template_of:
                template_of[offer.template] = message_template(spec, store, offer)
            new.append(dl.new_delivery(
                brand_id=brand, player_id=pid, channel=m["channel"], template_id=template_of[offer.template],
                params=message_params(spec, brand, offer) | {"recommended_game": _text(m.get("recommended_game"))},
                transactional=spec.transactional, campaign_id=spec.id,
                dedup_key=spec.dedup_key, product=spec.product, basis=basis, source="batch",
                locale=m.get("locale"), is_bonus=offer.is_bonus,
                cost_cents=int(m.get("offer_cost_eur_cents") or 0),
                offer_ends_at=sent_at + dt.timedelta(days=offer.expiry_days) if offer.is_bonus else None,
                delivery_id=delivery_id, at=sent_at))
        with engine.begin() as conn:
            dl.insert_deliveries(conn, new)
        return len(todo)
    finally:
        if own:
            engine.dispose()


"""The store's tables (SQLAlchemy Core). The migrations in ``crm/store/migrations`` create them;
this module is what the code reads and writes through (tests check the two agree)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Sizes of what is stored: names and ids as the contract bounds them (crm.contract.MAX_ID_CHARS),
# records as landing bounds them (crm.contract.MAX_RECORD_BYTES, cut to it in quarantine).
NAME_CHARS = 100
ID_CHARS = 128
REASON_CHARS = 1000

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(NAME_CHARS), nullable=False, unique=True),
    sa.Column("brand_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("scopes", sa.String(200), nullable=False),  # space-separated, sorted
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex of the key
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime, nullable=True),
)

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(NAME_CHARS), nullable=False, unique=True),
    sa.Column("person", sa.String(200), nullable=False),  # the person's name: approvals and the audit log
    sa.Column("role", sa.String(40), nullable=False),
    sa.Column("brands", sa.String(1000), nullable=False),  # space-separated, sorted; "*": every brand
    sa.Column("regions", sa.String(200), nullable=False),  # space-separated jurisdictions, sorted; "*": all
    sa.Column("password_hash", sa.String(300), nullable=False),  # crm.store.users.hash_password
    sa.Column("failed_logins", sa.Integer, nullable=False, default=0),
    sa.Column("locked_until", sa.DateTime, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("password_changed_at", sa.DateTime, nullable=False),
    sa.Column("disabled_at", sa.DateTime, nullable=True),
    sa.Column("totp_secret", sa.String(64), nullable=True),  # base32 (crm users totp); the second factor
    sa.Column("totp_last_step", sa.BigInteger, nullable=True),  # the last code's time step: no code twice
)

accepted_events = sa.Table(
    "accepted_events", metadata,
    sa.Column("event_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("brand_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("envelope", sa.Text, nullable=False),  # JSON: the envelope as landing lands it
    sa.Column("key_id", sa.Integer, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("handed_off_at", sa.DateTime, nullable=True),
    sa.Column("handoff_batch", sa.String(64), nullable=True),
    sa.Index("ix_accepted_events_pending", "handed_off_at", "received_at"),
)

quarantined_events = sa.Table(
    "quarantined_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("key_id", sa.Integer, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),  # the record as received, cut to MAX_RECORD_BYTES
    sa.Column("raw_size", sa.Integer, nullable=False),  # its size in bytes before any cut
    sa.Column("raw_sha256", sa.String(64), nullable=False),  # of the whole record
    sa.Column("reason", sa.String(REASON_CHARS), nullable=False),
)

# ---------------------------------------------------------------- the online profile (migration 0002)
# A copy of the warehouse's player profile (dim_player) per brand and player, taken after each
# refresh (crm.store.profile.sync_profiles): the service checks sends against it without ever
# opening the DuckDB file that Dagster writes.
profiles = sa.Table(
    "profiles", metadata,
    sa.Column("brand_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("player_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("profile", sa.Text, nullable=False),  # JSON: the dim_player row
    sa.Column("as_of_date", sa.Date, nullable=False),  # the warehouse's as-of date
    sa.Column("synced_at", sa.DateTime, nullable=False),
    # the player's cluster of linked accounts (player_clusters: brand + ':' + an id), NULL without one
    sa.Column("cluster_id", sa.String(2 * ID_CHARS + 1), nullable=True),
    sa.Index("ix_profiles_cluster", "brand_id", "cluster_id"),
)

# The players' stop events (crm.contract.STOP_EVENTS) received since the profile was taken: a
# withdrawal of consent (API event, unsubscribe or complaint feedback) or a self-exclusion. They
# apply at once, over the copy, until the warehouse has seen them (crm.store.profile).
profile_stops = sa.Table(
    "profile_stops", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("brand_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("player_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # withdrawal | self_exclusion | cooling_off | limit_hit
    sa.Column("channel", sa.String(40), nullable=True),  # a withdrawal's channel ('*': every channel)
    sa.Column("product", sa.String(40), nullable=True),  # a withdrawal of one product (None: all)
    sa.Column("event_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("event_type", sa.String(60), nullable=False),
    sa.Column("occurred_at", sa.DateTime, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("retired_at", sa.DateTime, nullable=True),  # when a synced profile showed it
    sa.Index("ix_profile_stops_player", "brand_id", "player_id"),
)

# Which players have an address per channel, as its pseudonym (migration 0009): the address itself is
# in the PII vault (crm.store.vault), read at the channel edge only. From player.registered and
# player.updated events, over the API or landed.
contacts = sa.Table(
    "contacts", metadata,
    sa.Column("brand_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("player_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("channel", sa.String(40), primary_key=True),  # email | sms
    sa.Column("address_pseudonym", sa.String(40), nullable=False),  # crm.store.vault.Vault.pseudonym
    sa.Column("updated_at", sa.DateTime, nullable=False),  # the event's time
)

# Addresses that bounced hard: no message goes to them until the player gives a new one.
address_suppressions = sa.Table(
    "address_suppressions", metadata,
    sa.Column("brand_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("player_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("channel", sa.String(40), primary_key=True),
    sa.Column("reason", sa.String(REASON_CHARS), nullable=False),
    sa.Column("delivery_id", sa.String(ID_CHARS), nullable=True),
    sa.Column("at", sa.DateTime, nullable=False),
)

# Messages the casino reported as sent (crm.delivery events in the warehouse, not our own lists'
# dispatches reported back), in the caps' look-back window: copied by the profile sync (migration 0003).
reported_messages = sa.Table(
    "reported_messages", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("brand_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("player_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("channel", sa.String(40), nullable=True),
    sa.Column("campaign_id", sa.String(ID_CHARS), nullable=True),
    sa.Column("dedup_key", sa.String(ID_CHARS), nullable=True),
    sa.Column("sent_at", sa.DateTime, nullable=False),
    sa.Column("synced_at", sa.DateTime, nullable=False),
    sa.Index("ix_reported_messages_player", "brand_id", "player_id", "sent_at"),
)

# ---------------------------------------------------------------- deliveries (migration 0002)
deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("delivery_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("brand_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("player_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("template_id", sa.String(NAME_CHARS), nullable=False),
    sa.Column("locale", sa.String(40), nullable=True),
    sa.Column("params", sa.Text, nullable=False),  # JSON: the personalization
    sa.Column("transactional", sa.Boolean, nullable=False),
    sa.Column("campaign_id", sa.String(NAME_CHARS), nullable=False),  # api_<template> for API sends
    sa.Column("frequency_policy_id", sa.String(NAME_CHARS), nullable=True),
    sa.Column("dedup_key", sa.String(NAME_CHARS), nullable=False),
    sa.Column("product", sa.String(40), nullable=False),
    sa.Column("is_bonus", sa.Boolean, nullable=False),
    sa.Column("cost_cents", sa.Integer, nullable=False),
    sa.Column("offer_ends_at", sa.DateTime, nullable=True),
    sa.Column("basis", sa.Text, nullable=False),  # JSON: what the send was allowed on (consent version ...)
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.DateTime, nullable=True),
    sa.Column("lease_until", sa.DateTime, nullable=True),
    sa.Column("provider_id", sa.String(REASON_CHARS), nullable=True),
    sa.Column("source", sa.String(20), nullable=False),  # api | batch
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_deliveries_player", "brand_id", "player_id", "created_at"),
)

delivery_events = sa.Table(
    "delivery_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("detail", sa.String(REASON_CHARS), nullable=False),
    sa.Index("ix_delivery_events_delivery", "delivery_id", "id"),
)

# One answer per (API key, X-Idempotency-Key): the same key with the same body gets it again.
idempotency_keys = sa.Table(
    "idempotency_keys", metadata,
    sa.Column("key_id", sa.Integer, primary_key=True),
    sa.Column("idempotency_key", sa.String(200), primary_key=True),
    sa.Column("request_sha256", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# ---------------------------------------------------------------- trigger firings (migration 0004)
# One row per (trigger, accepted event), queued in the transaction that accepted the event: the
# trigger worker's queue (status pending, due_at), its durable timers (a message held until the
# player's quiet hours end: pending again with a later due_at, held true) and the record of what
# became of the firing (queued as a delivery, refused by a rule, holdout, no match, ...).
trigger_firings = sa.Table(
    "trigger_firings", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trigger_id", sa.String(64), nullable=False),
    sa.Column("event_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("event_type", sa.String(60), nullable=False),
    sa.Column("brand_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("player_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("occurred_at", sa.DateTime, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("due_at", sa.DateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("held", sa.Boolean, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("lease_until", sa.DateTime, nullable=True),
    sa.Column("trigger_version", sa.String(64), nullable=True),  # the spec hash it was decided with
    sa.Column("arm", sa.String(20), nullable=True),  # holdout | A (the assignment, for readouts)
    sa.Column("rule", sa.String(60), nullable=True),  # the rule that refused it
    sa.Column("detail", sa.String(REASON_CHARS), nullable=True),
    sa.Column("delivery_id", sa.String(ID_CHARS), nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("trigger_id", "event_id", name="uq_trigger_firings_event"),
    sa.Index("ix_trigger_firings_due", "status", "due_at"),
    sa.Index("ix_trigger_firings_player", "brand_id", "player_id", "trigger_id", "updated_at"),
)

# ---------------------------------------------------------------- journeys (migration 0005)
# A player's run through a journey: its step, its timer (due_at: a wait's end, a held send), its
# outcome. At most one active run per (journey, player): a partial unique index. The log holds
# what each step did (entered, sent, suppressed by a rule, waited, exited, converted).
journey_runs = sa.Table(
    "journey_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("journey_id", sa.String(64), nullable=False),
    sa.Column("brand_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("player_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("entry_key", sa.String(ID_CHARS), nullable=False),  # what entered it: scan:<date> or an event id
    sa.Column("status", sa.String(20), nullable=False),  # active | completed | converted | exited | holdout
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("due_at", sa.DateTime, nullable=False),
    sa.Column("waiting_since", sa.DateTime, nullable=True),  # in a wait step: since when
    sa.Column("entered_at", sa.DateTime, nullable=False),
    sa.Column("ended_at", sa.DateTime, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("lease_until", sa.DateTime, nullable=True),
    sa.Column("version", sa.String(64), nullable=True),
    sa.Column("arm", sa.String(20), nullable=True),  # holdout | A
    sa.Column("last_delivery_id", sa.String(ID_CHARS), nullable=True),
    sa.Column("last_sent_at", sa.DateTime, nullable=True),
    sa.Column("outcome", sa.String(80), nullable=True),  # why it ended
    sa.Column("detail", sa.String(REASON_CHARS), nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("journey_id", "brand_id", "player_id", "entry_key", name="uq_journey_runs_entry"),
    sa.Index("ix_journey_runs_due", "status", "due_at"),
    sa.Index("ix_journey_runs_player", "brand_id", "player_id", "status"),
    sa.Index("ux_journey_runs_active", "journey_id", "brand_id", "player_id", unique=True,
             sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'")),
)

journey_log = sa.Table(
    "journey_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("journey_id", sa.String(64), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("what", sa.String(40), nullable=False),  # entered | sent | suppressed | waited | exited | converted ...
    sa.Column("rule", sa.String(60), nullable=True),
    sa.Column("delivery_id", sa.String(ID_CHARS), nullable=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("detail", sa.String(REASON_CHARS), nullable=True),
    sa.Index("ix_journey_log_run", "run_id", "id"),
    sa.Index("ix_journey_log_journey", "journey_id", "at"),
)

# Landed batch files whose contact addresses are already in ``contacts`` (migration 0006): the
# daily profile sync reads only the files landed since (a landed file is never rewritten), not
# every registration of the history again.
synced_files = sa.Table(
    "synced_files", metadata,
    sa.Column("purpose", sa.String(40), primary_key=True),  # contacts
    sa.Column("file_name", sa.String(ID_CHARS), primary_key=True),
    sa.Column("synced_at", sa.DateTime, nullable=False),
)

# ---------------------------------------------------------------- offers (migration 0007)
# Each offer POST /v1/offers/generate issued (crm.store.offers): the player's bonus of the day in the
# contact ledger, and the id the casino's bonus.* events carry back (the warehouse's fct_offers).
offers = sa.Table(
    "offers", metadata,
    sa.Column("offer_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("brand_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("player_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("intent", sa.String(64), nullable=False),
    sa.Column("offer_name", sa.String(64), nullable=False),  # its name in the offer catalogue
    sa.Column("template", sa.String(40), nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON: the offer's terms
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("product", sa.String(40), nullable=False),
    sa.Column("cost_cents", sa.BigInteger, nullable=False),  # EUR cents: the template's cost model
    sa.Column("predicted_value_cents", sa.BigInteger, nullable=True),  # gross predicted incremental value
    sa.Column("issued_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Column("key_id", sa.Integer, nullable=False),
    sa.Index("ix_offers_player", "brand_id", "player_id", "issued_at"),
    sa.Index("ix_offers_issued", "issued_at"),
)

# What each intent's offers cost per brand and (UTC) day: the row is locked while an offer is
# decided, so two processes never both spend the last of a budget.
offer_spend = sa.Table(
    "offer_spend", metadata,
    sa.Column("brand_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("intent", sa.String(64), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("spent_cents", sa.BigInteger, nullable=False),
)


# The audit log's entries (crm.campaigns.audit), append-only in the database (migration 0010: triggers
# refuse UPDATE / DELETE / TRUNCATE): the file's witness, so a rewritten or shortened log is found.
audit_entries = sa.Table(
    "audit_entries", metadata,
    sa.Column("log", sa.String(500), primary_key=True),  # the data home's audit log (its resolved path)
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("entry", sa.Text, nullable=False),  # the canonical JSON line, as in audit.jsonl
    sa.Column("recorded_at", sa.DateTime, nullable=False),
)

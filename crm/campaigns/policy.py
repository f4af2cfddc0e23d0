"""The house contact policy and the blackout calendar: limits that hold for every campaign.

Compliance owns these numbers; a campaign's ``frequency`` and ``budget`` blocks can only
tighten them (a campaign asking for more than the policy allows is rejected on load).

* Frequency caps count the messages *sent* to a player (delivered by the operator's
  channels, dispatched from our outbox, or planned today by a higher-priority list), per
  channel and across all channels (global), per day (the send's UTC date) and per week
  (the send's UTC date and the six days before). A holdout player is not sent anything and
  does not count.
* Cooldown: hours between this send and the nearest other message to the player (any
  channel; earlier, or planned later the same day).
* Dedup window: no second message with the same dedup key (default: the campaign id) to
  a player within ``dedup_days`` days.
* Offer economics: at most ``max_cost_per_player_per_day_cents`` of offers per player per
  day across all campaigns, at most ``max_bonus_offers_per_day`` bonus offers (bonus,
  cashback, free spins) per player per day, no new bonus offer while one of ours is still
  running (sent, and its ``expiry_days`` not over).

The calendar (``campaigns/_calendar.yaml``; files starting with ``_`` are not campaigns)
lists blackout windows: local dates on which no message goes out, optionally only in some
jurisdictions, channels or products::

    blackouts:
      - {name: "Christmas", start: 2025-12-24, end: 2025-12-26}
      - {name: "Election day NL", start: 2025-10-29, end: 2025-10-29, jurisdictions: [NL], channels: [sms, push]}
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from crm.contract import CHANNELS, JURISDICTIONS, MESSAGE_CHANNELS, PRODUCTS

CALENDAR_FILE = "_calendar.yaml"


@dataclass(frozen=True)
class ContactPolicy:
    """Limits per player that hold across all campaigns (see the module docstring)."""

    # per channel: (max messages per day, max messages per week)
    channel_caps: dict[str, tuple[int, int]] = field(default_factory=lambda: {
        c.name: c.caps for c in MESSAGE_CHANNELS})  # the vocabulary's defaults (crm.contract)
    global_cap: tuple[int, int] = (2, 6)  # all channels together: per day, per week
    cooldown_hours: float = 12.0  # between any two messages to a player
    dedup_days: int = 7  # no repeat of the same campaign (or dedup key) within this many days
    max_cost_per_player_per_day_cents: int = 10_000  # EUR 100 of offers per player per day
    max_bonus_offers_per_day: int = 1  # bonus, cashback or free spins: one per player per day

    def channel_cap(self, channel: str) -> tuple[int, int]:
        return self.channel_caps.get(channel, (0, 0))  # an unknown channel may not be used


POLICY = ContactPolicy()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Blackout(_Strict):
    """Local dates [start, end] (inclusive) on which no message goes out."""

    name: str
    start: dt.date
    end: dt.date
    jurisdictions: list[Literal[JURISDICTIONS]] = []  # type: ignore[valid-type]  # empty = all
    channels: list[Literal[CHANNELS]] = []  # type: ignore[valid-type]  # empty = all
    products: list[Literal[PRODUCTS]] = []  # type: ignore[valid-type]  # empty = all

    @model_validator(mode="after")
    def _ordered(self) -> Blackout:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    def applies(self, channel: str, product: str) -> bool:
        return (not self.channels or channel in self.channels) and (not self.products or product in self.products)


class Calendar(_Strict):
    blackouts: list[Blackout] = []


class CalendarError(ValueError):
    """A calendar file that cannot be used, with the file and field named."""


def load_calendar(directory: str | Path) -> Calendar:
    """The blackout calendar of a campaign folder (``_calendar.yaml``); none: an empty calendar.

    A broken calendar raises :class:`CalendarError`: lists are not built against a
    calendar we cannot read (fail closed).
    """
    from crm.campaigns.spec import load_config_file  # it imports this module

    return load_config_file(Path(directory) / CALENDAR_FILE, Calendar, "calendar (a 'blackouts' list)", CalendarError)


def blackout_names(calendar: Calendar, local_dates: np.ndarray, countries: np.ndarray, channel: str,
                   product: str, utc_date: dt.date) -> np.ndarray:
    """Per player: the first blackout covering their local send date, or None.

    ``local_dates``: datetime64[D] per player (NaT when the local date is unknown: then a
    blackout within a day either side of the send's ``utc_date`` counts, fail closed); ``countries``: jurisdiction
    codes (an unknown one is covered by every jurisdiction's blackouts).
    """
    out = np.full(len(local_dates), None, dtype=object)
    dates = np.asarray(local_dates, dtype="datetime64[D]")
    unknown = np.isnat(dates)
    known_country = np.isin(np.asarray(countries, dtype=object), np.asarray(JURISDICTIONS, dtype=object))
    for b in calendar.blackouts:
        if not b.applies(channel, product):
            continue
        start, end = np.datetime64(b.start, "D"), np.datetime64(b.end, "D")
        near = bool(start <= np.datetime64(utc_date, "D") + 1 and end >= np.datetime64(utc_date, "D") - 1)
        in_window = np.where(unknown, near, (dates >= start) & (dates <= end))
        where = (np.isin(np.asarray(countries, dtype=object), np.asarray(b.jurisdictions, dtype=object))
                 | ~known_country) if b.jurisdictions else np.ones(len(dates), dtype=bool)
        out[in_window & where & (out == None)] = b.name  # noqa: E711 - elementwise
    return out

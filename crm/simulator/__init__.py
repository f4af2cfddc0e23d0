"""A synthetic casino: players, sessions, bets, payments, bonuses, RG and consent events and
campaign feedback, written as event files that obey :mod:`crm.contract`."""

from crm.simulator.casino import simulate

__all__ = ["simulate"]

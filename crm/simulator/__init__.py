"""A synthetic casino: players, sessions, bets, payments, bonuses, RG and consent events and
campaign feedback, written as event files that obey :mod:`crm.contract`.

:mod:`~crm.simulator.casino` runs it (:func:`simulate`, and what the world looks like);
:mod:`~crm.simulator.world` holds its parameters, :mod:`~crm.simulator.chunk` draws the lives
of one chunk of players, :mod:`~crm.simulator.files` writes the event, truth and export files."""

from crm.simulator.casino import simulate

__all__ = ["simulate"]

"""casino-crm: the domain package, cut along the data flow.

* foundations, used by every step: :mod:`crm.config` (paths, environment), :mod:`crm.contract`
  (the event contract and its vocabularies), :mod:`crm.sql`, :mod:`crm.safe_yaml`,
  :mod:`crm.warehouse`, :mod:`crm.gate_result`, :mod:`crm.run_lock`, :mod:`crm.notify`,
  :mod:`crm.lineage`;
* :mod:`crm.simulator`: a synthetic casino that writes events obeying the contract;
* :mod:`crm.ingest`: events and operators' daily files into the landing zone;
* :mod:`crm.campaigns`: campaign specs, eligibility, selection, publishing, approvals,
  gate overrides and dispatch;
* :mod:`crm.measurement`: what campaigns did (readouts);
* :mod:`crm.cli`: the ``crm`` command.

Never imports Dagster: orchestration/ imports this package, not the other way round
(import-linter contracts in pyproject.toml keep the layering).
"""

__version__ = "0.1.0"

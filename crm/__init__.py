"""casino-crm: the domain package (event contract, simulator, landing, campaigns, CLI).

Never imports Dagster: orchestration/ imports this package, not the other way round.
"""

__version__ = "0.1.0"

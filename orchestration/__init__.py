"""Dagster wiring only: Definitions, assets that call into crm/, ml/ and expectations/,
resources, schedules and asset checks. Keep logic out of here."""

"""Getting data in: events into the landing zone (:mod:`crm.ingest.landing`, bad records
quarantined with a reason) and operators' daily aggregates (:mod:`crm.ingest.import_daily`)."""

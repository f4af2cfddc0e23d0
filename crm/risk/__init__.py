"""Bonus abuse and multi-account detection (issue 19): entity resolution over the identifiers'
pseudonyms (:mod:`crm.risk.linking`)."""

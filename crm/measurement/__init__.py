"""What the campaigns did: per-campaign readouts of treated vs holdout (:mod:`crm.measurement.readout`)."""

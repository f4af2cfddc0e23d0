"""When to retrain: on a schedule of the model's own, not on every daily refresh.

Scoring and lists run daily with the ``@champion``; a model is trained again when

* it has never been trained (or has no champion),
* its latest training (any version, promoted or not) is ``every_days`` or more as-of days old
  (``CRM_RETRAIN_EVERY_DAYS``, default 7: weekly),
* the champion's inputs drifted: the largest PSI of its score or of a feature on today's
  features against its training reference reaches ``psi`` (``CRM_RETRAIN_PSI``, default 0.25,
  "significant" in :func:`ml.metrics.psi_status`),
* or someone asks (``crm run --retrain``, ``crm ml train``).

The training date is the ``as_of_date`` tag the training run carries (``crm.lineage``); a run for an
as-of date before it does not retrain (it would register a model trained on older data).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ml import registry

EVERY_DAYS_ENV = "CRM_RETRAIN_EVERY_DAYS"
PSI_ENV = "CRM_RETRAIN_PSI"
DEFAULT_EVERY_DAYS = 7
DEFAULT_PSI = 0.25


@dataclass(frozen=True)
class RetrainDecision:
    due: bool
    reason: str
    last_trained_as_of: dt.date | None = None
    latest_version: str | None = None
    champion_version: str | None = None
    max_psi: float | None = None

    def metadata(self) -> dict:
        return {"retrained": self.due, "retrain_reason": self.reason,
                "last_trained_as_of": self.last_trained_as_of.isoformat() if self.last_trained_as_of else "never",
                "champion_version": self.champion_version or "none",
                **({"max_psi_today": round(self.max_psi, 4)} if self.max_psi is not None else {})}


def _env_number(name: str, default: float, kind: type) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError as e:
        raise ValueError(f"{name} must be a {'whole ' if kind is int else ''}number, got {raw!r}") from e
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {raw!r}")
    return value


def every_days() -> int:
    return int(_env_number(EVERY_DAYS_ENV, DEFAULT_EVERY_DAYS, int))


def psi_threshold() -> float:
    return float(_env_number(PSI_ENV, DEFAULT_PSI, float))


def last_training(client, name: str) -> tuple[str | None, dt.date | None]:
    """(version, as-of date) of the newest registered version of ``name`` (any alias)."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'", max_results=10000)
    except MlflowException:
        return None, None
    if not versions:
        return None, None
    latest = max(versions, key=lambda v: int(v.version))
    tag = client.get_run(latest.run_id).data.tags.get("as_of_date") if latest.run_id else None
    try:
        return str(latest.version), dt.date.fromisoformat(tag) if tag else None
    except ValueError:
        return str(latest.version), None


@registry.quiet()
def retrain_decision(tracking_uri: str, name: str, as_of: dt.date, *,
                     features: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
                     score_config=None, force: bool = False) -> RetrainDecision:
    """Whether the model registered as ``name`` is due for training on the run for ``as_of``.

    ``features`` + ``score_config`` (a :class:`ml.models.ModelConfig`): today's scoring features (or a
    function reading them, called only when the drift check is reached), to check the champion's
    drift; without them only the schedule counts (uplift models)."""
    if force:
        return RetrainDecision(True, "asked for (crm run --retrain)")
    client = registry.get_client(tracking_uri)
    version, trained = last_training(client, name)
    champion = registry.champion_version(client, name)
    champ = str(champion.version) if champion is not None else None
    if version is None:
        return RetrainDecision(True, "never trained")
    if champion is None:
        return RetrainDecision(True, "no champion", trained, version)
    if trained is None:
        return RetrainDecision(True, f"v{version} has no training date (as_of_date tag)", None, version, champ)
    if as_of < trained:
        return RetrainDecision(False, f"v{version} was trained as of {trained}, after this run's {as_of}: "
                                      "not retrained on older data", trained, version, champ)
    age, every = (as_of - trained).days, every_days()
    if age >= every:
        return RetrainDecision(True, f"scheduled: last trained as of {trained}, {age} days ago (every {every})",
                               trained, version, champ)
    max_psi = None
    if callable(features) and score_config is not None:
        features = features()
    if features is not None and score_config is not None and len(features):
        from ml.score import score_model

        drift = score_model(score_config, features, tracking_uri=tracking_uri).drift
        max_psi = drift.get("max_psi")
        limit = psi_threshold()
        if max_psi is not None and max_psi >= limit:
            worst = drift.get("max_feature") if (drift.get("max_feature_psi") or 0) >= (drift.get("score_psi") or 0) \
                else "score"
            return RetrainDecision(True, f"drift: PSI {max_psi:.3f} on {worst} reaches {limit} "
                                         f"({PSI_ENV})", trained, version, champ, max_psi)
    return RetrainDecision(False, f"champion v{champ} in use: last trained as of {trained} ({age} days ago; next "
                                  f"scheduled as of {trained + dt.timedelta(days=every)})"
                                  + (f"; drift PSI {max_psi:.3f} below {psi_threshold()}" if max_psi is not None
                                     else ""), trained, version, champ, max_psi)

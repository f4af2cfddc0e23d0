"""Score players with the registered churn model (``models:/<name>@<alias>``).

The alias is resolved to a version first and that exact version is loaded with the native
LightGBM flavour (``predict_proba``), so the reported version is the one that scored.
Loaded versions are cached in-process: a registered model version is immutable.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd

from ml import registry
from ml.features import FEATURE_NAMES

_CACHE: dict[tuple[str, str, str], object] = {}
_CACHE_MAX = 8
_LOCK = threading.Lock()


def load_model(tracking_uri: str, model_name: str, version: str):
    """The LightGBM classifier of ``model_name`` version ``version`` (cached)."""
    key = (tracking_uri, model_name, str(version))
    with _LOCK:
        model = _CACHE.get(key)
    if model is not None:
        return model
    import mlflow.lightgbm

    registry.use_tracking_uri(tracking_uri)
    model = mlflow.lightgbm.load_model(f"models:/{model_name}/{version}")
    with _LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = model
    return model


def model_features(model) -> list[str]:
    """The columns a model was trained on (its own record), falling back to the spec."""
    names = getattr(model, "feature_name_", None)
    return list(names) if names is not None else list(FEATURE_NAMES)


def score_players(
    features: pd.DataFrame, *, tracking_uri: str, model_name: str = "churn_lgbm", alias: str = "champion"
) -> pd.DataFrame:
    """Churn probability for every row of ``features``.

    Returns ``player_id``, ``churn_score`` (float in [0, 1]), ``model_name``, ``model_version``
    (str): one row per input row, same order and index. Raises
    :class:`ml.registry.NoModelError` when nothing is registered as ``model_name@alias``.
    """
    with registry.quiet():
        client = registry.get_client(tracking_uri)
        mv = registry.require_version(client, model_name, alias)
        version = str(mv.version)
        model = load_model(tracking_uri, model_name, version)
    cols = model_features(model)
    missing = [c for c in ["player_id", *cols] if c not in features.columns]
    if missing:
        raise ValueError(f"features are missing columns needed by {model_name} v{version}: {missing}")
    if len(features):
        proba = model.predict_proba(features[cols].astype("float64"))[:, 1]
    else:
        proba = np.empty(0, dtype="float64")
    return pd.DataFrame(
        {
            "player_id": features["player_id"].to_numpy(),
            "churn_score": np.clip(proba.astype("float64"), 0.0, 1.0),
            "model_name": model_name,
            "model_version": version,
        },
        index=features.index,
    )

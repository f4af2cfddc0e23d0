"""Score players with a registered uplift model (``models:/<name>@<alias>`` or a version).

The registered pyfunc (:mod:`ml.uplift_train`) wraps the joblib file of
:func:`ml.uplift.save_model`; it is loaded once per (tracking URI, name, version) and the
:class:`ml.uplift.UpliftModel` inside scores raw feature columns. A score is the predicted
uplift: treated minus control expected outcome (a probability difference for
``uplift_deposit``, EUR cents of 14-day NGR for ``uplift_ngr``), so it can be negative.
:func:`value_scores` derives from the ``uplift_deposit`` scores the value campaigns target by
(``uplift_value``, :func:`ml.policy.deposit_value_cents`).

Never imports Dagster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml import registry
from ml.policy import deposit_value_cents, expected_theoretical_win_cents
from ml.uplift import UpliftModel

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
_CACHE: dict[tuple[str, str, str], UpliftModel] = {}


@dataclass(frozen=True)
class LoadedUplift:
    model_name: str
    version: str
    model: UpliftModel


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name@alias`` or ``models:/name/3`` -> (name, alias, version)."""
    m = _URI.match(uri)
    if not m:
        raise ValueError(f"not a registered-model URI: {uri!r} (expected models:/NAME@ALIAS or models:/NAME/VERSION)")
    return m["name"], m["alias"], m["version"]


def load(tracking_uri: str, model_name: str, alias: str | None = registry.CHAMPION,
         version: str | None = None) -> LoadedUplift | None:
    """The uplift model behind ``name@alias`` (or ``name/version``); ``None`` if there is none."""
    with registry.quiet():
        import mlflow.pyfunc

        client = registry.get_client(tracking_uri)
        mv = registry.get_version(client, model_name, version) if version else registry.alias_version(
            client, model_name, alias or registry.CHAMPION)
        if mv is None:
            return None
        key = (tracking_uri, model_name, str(mv.version))
        if key not in _CACHE:
            registry.use_tracking_uri(tracking_uri)
            pyfunc = mlflow.pyfunc.load_model(f"models:/{model_name}/{mv.version}")
            _CACHE[key] = pyfunc.unwrap_python_model().model
        return LoadedUplift(model_name, str(mv.version), _CACHE[key])


def load_uri(tracking_uri: str, uri: str) -> LoadedUplift:
    """:func:`load` for a ``models:/`` URI; raises ValueError when nothing is registered there."""
    name, alias, version = parse_model_uri(uri)
    try:
        loaded = load(tracking_uri, name, alias, version)
    except registry.NoModelError as e:
        raise ValueError(f"{uri}: {e}") from e
    if loaded is None:
        raise ValueError(f"{uri}: no such registered model version in {tracking_uri}")
    return loaded


def score_players(loaded: LoadedUplift, features: pd.DataFrame) -> pd.DataFrame:
    """``player_id``, ``score`` (predicted uplift), ``model_name``, ``model_version`` per row."""
    score = loaded.model.predict_uplift(features) if len(features) else np.empty(0)
    return pd.DataFrame({
        "player_id": features["player_id"].astype(str).to_numpy(),
        "score": np.asarray(score, dtype="float64"),
        "model_name": loaded.model_name,
        "model_version": loaded.version,
    }, index=features.index)


STAKE_FEATURE = "stake_eur_30d"  # the player's recent pace: expected theoretical win = this x the house margin


def value_scores(deposit: pd.DataFrame, features: pd.DataFrame, margin: float) -> pd.DataFrame:
    """The ``uplift_value`` scores (:data:`ml.models.UPLIFT_VALUE_MODEL`): each player's predicted deposit
    uplift (``deposit``, from :func:`score_players` of the ``uplift_deposit`` champion, rows aligned with
    ``features``) times their expected theoretical win at the observed house ``margin``; EUR cents, gross of
    any offer's cost. Model name and version stay the deposit model's: the value is that model's."""
    if STAKE_FEATURE not in features:
        raise ValueError(f"the features have no {STAKE_FEATURE!r}: the expected theoretical win needs it")
    if len(deposit) != len(features):
        raise ValueError(f"{len(deposit)} deposit scores for {len(features)} feature rows")
    win = expected_theoretical_win_cents(features[STAKE_FEATURE].to_numpy(dtype="float64", na_value=np.nan), margin)
    return deposit.assign(score=deposit_value_cents(deposit["score"].to_numpy(dtype="float64"), win))

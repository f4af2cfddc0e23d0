"""Score players with a registered model (``models:/<name>@<alias>``) and check drift.

The alias is resolved to a version first and that exact version is loaded with the native
LightGBM flavour, together with its feature schema (``feature_schema.json``: columns, kinds,
categories fixed at training) and its drift reference (``reference/drift_reference.json``),
so the reported version is the one that scored. Loaded versions are cached in-process per
(tracking URI, model name, version): a registered model version is immutable.

Scoring builds one float matrix (:meth:`ml.models.FeatureSchema.matrix`) and calls
``Booster.predict`` on it; the overhead over a bare ``Booster.predict`` is the alias lookup,
the matrix and (optionally) the drift report.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml import registry
from ml.features import FEATURE_NAMES
from ml.metrics import psi_against, psi_status, reference_bins
from ml.models import CATEGORICAL, CHURN, FeatureSchema, ModelConfig, get_config

log = logging.getLogger(__name__)

SCHEMA_ARTIFACT = "feature_schema.json"
REFERENCE_ARTIFACT = "reference/drift_reference.json"
LEGACY_SCORES_ARTIFACT = "reference/holdout_scores.csv"

_CACHE: OrderedDict[tuple[str, str, str], LoadedModel] = OrderedDict()
_CACHE_MAX = 8
_CLIENTS: dict[str, object] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoadedModel:
    """One registered model version, ready to score."""

    model_name: str
    version: str
    run_id: str | None
    model: object  # lightgbm.LGBMClassifier
    schema: FeatureSchema
    reference: dict | None = None  # drift reference logged at training (None for old versions)

    @property
    def booster(self):
        return self.model.booster_

    def check_columns(self, features: pd.DataFrame) -> None:
        missing = [c for c in ["player_id", *self.schema.names] if c not in features.columns]
        if missing:
            raise ValueError(f"features are missing columns needed by {self.model_name} v{self.version}: {missing}")

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Positive-class probability for every row (float64 in [0, 1])."""
        return self.predict_with_matrix(features)[0]

    def predict_with_matrix(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """(:meth:`predict`, the model's input matrix when it was built whole; None when scored in chunks).

        Past :data:`SCORE_CHUNK_ROWS` rows the matrix is built and scored a chunk at a time in one
        reused buffer: at 1 M players a whole matrix is 450 MB of fresh memory, whose first touch
        cost up to a third of the prediction on our machines; the peak stays bounded too."""
        n = len(features)
        if n <= SCORE_CHUNK_ROWS:
            matrix = self.schema.matrix(features)
            return (self.predict_matrix(matrix) if n else np.empty(0, dtype="float64")), matrix
        columns = features[list(self.schema.names)]
        buffer = np.empty((len(self.schema.names), SCORE_CHUNK_ROWS), dtype="float64").T
        p = np.empty(n, dtype="float64")
        for start in range(0, n, SCORE_CHUNK_ROWS):
            part = columns.iloc[start:start + SCORE_CHUNK_ROWS]
            out = buffer if len(part) == SCORE_CHUNK_ROWS else None  # the last, shorter chunk: its own
            p[start:start + len(part)] = self.predict_matrix(self.schema.matrix(part, out=out))
        return p, None

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """:meth:`predict` of a matrix from ``self.schema.matrix``."""
        return np.clip(np.asarray(self.booster.predict(matrix), dtype="float64"), 0.0, 1.0)


@dataclass
class ScoreResult:
    """``scores``: ``player_id``, ``score``, ``model_name``, ``model_version`` (same rows, order
    and index as the input). ``drift``: see :func:`drift_report`."""

    scores: pd.DataFrame
    drift: dict = field(default_factory=dict)
    model_name: str = ""
    model_version: str = ""


def _client(tracking_uri: str):
    with _LOCK:
        client = _CLIENTS.get(tracking_uri)
    if client is None:
        client = registry.get_client(tracking_uri)
        with _LOCK:
            _CLIENTS[tracking_uri] = client
    return client


def _load_text(uri: str) -> str | None:
    import mlflow

    try:
        return mlflow.artifacts.load_text(uri)
    except Exception as exc:  # artifact absent (older run) or unreadable
        log.debug("no artifact %s: %s", uri, exc)
        return None


def load(tracking_uri: str, model_name: str, version: str | int) -> LoadedModel:
    """Model, feature schema and drift reference of ``model_name`` version ``version`` (cached)."""
    key = (tracking_uri, model_name, str(version))
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    with registry.quiet():
        import mlflow.lightgbm

        registry.use_tracking_uri(tracking_uri)
        mv = _client(tracking_uri).get_model_version(model_name, str(version))
        model = mlflow.lightgbm.load_model(f"models:/{model_name}/{version}")
        schema_text = _load_text(f"runs:/{mv.run_id}/{SCHEMA_ARTIFACT}") if mv.run_id else None
        ref_text = _load_text(f"runs:/{mv.run_id}/{REFERENCE_ARTIFACT}") if mv.run_id else None
        legacy = _load_text(f"runs:/{mv.run_id}/{LEGACY_SCORES_ARTIFACT}") if mv.run_id and not ref_text else None
    if schema_text:
        schema = FeatureSchema.from_dict(json.loads(schema_text))
    else:  # trained before schemas were logged: all-numeric, the model's own columns
        names = getattr(model, "feature_name_", None)
        schema = FeatureSchema.numeric(list(names) if names is not None else list(FEATURE_NAMES))
    reference = json.loads(ref_text) if ref_text else None
    if reference is None and legacy:
        col = pd.read_csv(io.StringIO(legacy)).iloc[:, 0]
        reference = {"score": reference_bins(col.to_numpy()), "features": {}, "population": None, "rows": len(col)}
    loaded = LoadedModel(model_name, str(version), mv.run_id, model, schema, reference)
    with _LOCK:
        _CACHE[key] = loaded
        while len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)
    return loaded


def load_model(tracking_uri: str, model_name: str, version: str):
    """The LightGBM classifier of ``model_name`` version ``version`` (cached)."""
    return load(tracking_uri, model_name, version).model


def resolve(tracking_uri: str, model_name: str, alias: str = registry.CHAMPION) -> LoadedModel:
    """The loaded model behind ``model_name@alias`` (the alias is looked up on every call)."""
    with registry.quiet():
        mv = registry.require_version(_client(tracking_uri), model_name, alias)
    return load(tracking_uri, model_name, str(mv.version))


def model_features(model) -> list[str]:
    """The columns a model was trained on (its own record), falling back to the spec."""
    if isinstance(model, LoadedModel):
        return list(model.schema.names)
    names = getattr(model, "feature_name_", None)
    return list(names) if names is not None else list(FEATURE_NAMES)


DRIFT_SAMPLE_ROWS = 200_000
SCORE_CHUNK_ROWS = 131_072
_COMPARISON = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|==|!=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")
_OPS = {"<=": np.less_equal, ">=": np.greater_equal, "==": np.equal, "!=": np.not_equal, "<": np.less, ">": np.greater}


def _population_mask(features: pd.DataFrame, population: str | None) -> tuple[np.ndarray, str | None]:
    if not population:
        return np.ones(len(features), dtype=bool), None
    simple = _COMPARISON.match(population)
    if simple and simple[1] in features.columns:  # "column <op> number", the usual population: numpy,
        # not DataFrame.eval's parser (3 ms a call); a missing value is outside, as in eval
        col = pd.to_numeric(features[simple[1]], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            return _OPS[simple[2]](col, float(simple[3])) & ~np.isnan(col), None
    try:
        return np.asarray(features.eval(population), dtype=bool), None
    except Exception as exc:  # population columns not in the scored frame
        return np.ones(len(features), dtype=bool), f"population filter not applied ({exc})"


def drift_report(reference: dict | None, features: pd.DataFrame, scores: np.ndarray,
                 matrix: tuple[FeatureSchema, np.ndarray] | None = None) -> dict:
    """PSI of the score and of each reference feature against the training holdout.

    Only rows inside the model's population (stored with the reference) are compared, so
    the comparison is like for like. Returns ``available``, ``population``, ``rows``,
    ``reference_rows``, ``reference_as_of``, ``score_psi``, ``features`` ({feature: psi}),
    ``max_feature_psi``, ``max_feature``, ``max_psi`` (score and features) and ``status``
    (stable < 0.1 <= moderate < 0.25 <= significant); ``available`` is False (with a
    ``reason``) when the model has no reference or no row is in the population.
    ``matrix``: the (schema, matrix) the scores came from, whose numeric columns are reused.

    Past :data:`DRIFT_SAMPLE_ROWS` rows in the population, PSI is taken over that many evenly
    spaced rows (``compared_rows``): ten bins' shares over 200,000 rows are within about 0.1
    point of the population's, and drift then costs the same at 1 M players as at 200,000.
    """
    if not reference:
        return {"available": False, "reason": "model version has no drift reference"}
    mask, note = _population_mask(features, reference.get("population"))
    rows = int(mask.sum())
    take = np.flatnonzero(mask)
    if rows > DRIFT_SAMPLE_ROWS:  # evenly spaced over the rows (sorted by player): deterministic
        take = take[np.linspace(0, rows - 1, DRIFT_SAMPLE_ROWS).astype(np.int64)]
    out: dict = {
        "available": rows > 0,
        "population": reference.get("population"),
        "rows": rows,
        "compared_rows": len(take),
        "reference_rows": reference.get("rows"),
        "reference_as_of": reference.get("as_of"),
    }
    if note:
        out["note"] = note
    if rows == 0:
        out["reason"] = "no scored row in the model's population"
        return out
    out["score_psi"] = psi_against(reference["score"], scores[take])
    feats: dict[str, float] = {}
    numeric_at = ({n: i for i, (n, k) in enumerate(zip(matrix[0].names, matrix[0].kinds, strict=True))
                   if k != CATEGORICAL} if matrix is not None else {})
    for name, ref in (reference.get("features") or {}).items():
        if name not in features.columns:
            continue
        s = features[name]
        if ref.get("kind") == CATEGORICAL:
            col = s.iloc[take]
        elif name in numeric_at:  # the matrix's float64 column, already converted
            col = matrix[1][take, numeric_at[name]]
        else:
            try:
                col = s.to_numpy(dtype="float64", na_value=np.nan)[take]
            except (TypeError, ValueError):
                col = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)[take]
        feats[name] = psi_against(ref, col)
    out["features"] = feats
    if feats:
        worst = max(feats, key=feats.get)
        out["max_feature"], out["max_feature_psi"] = worst, feats[worst]
    else:
        out["max_feature"], out["max_feature_psi"] = None, None
    out["max_psi"] = max([out["score_psi"], *feats.values()])
    out["status"] = psi_status(out["max_psi"])
    return out


def score_model(
    config_or_name: ModelConfig | str,
    features: pd.DataFrame,
    *,
    tracking_uri: str,
    alias: str = registry.CHAMPION,
    model_name: str | None = None,
    drift: bool = True,
) -> ScoreResult:
    """Score every row of ``features`` with ``<registered name>@alias``.

    ``config_or_name``: a :class:`ModelConfig`, a config name (``"churn"``) or a registered
    model name (``"churn_lgbm"``); ``model_name`` overrides the registered name. Raises
    :class:`ml.registry.NoModelError` when nothing is registered under the alias and
    ``ValueError`` when ``features`` lacks a column the model needs.
    """
    config = get_config(config_or_name)
    name = model_name or (config.registered_name if config else str(config_or_name))
    loaded = resolve(tracking_uri, name, alias)
    loaded.check_columns(features)
    p, matrix = loaded.predict_with_matrix(features)
    scores = pd.DataFrame(
        {
            "player_id": features["player_id"].array,  # no copy (Arrow strings stay Arrow)
            "score": p,
            "model_name": name,
            "model_version": loaded.version,
        },
        index=features.index,
    )
    report = (drift_report(loaded.reference, features, p, None if matrix is None else (loaded.schema, matrix))
              if drift and len(features) else {})
    return ScoreResult(scores=scores, drift=report, model_name=name, model_version=loaded.version)


def score_players(
    features: pd.DataFrame, *, tracking_uri: str, model_name: str = CHURN.registered_name, alias: str = "champion"
) -> pd.DataFrame:
    """Churn probability for every row of ``features``.

    Returns ``player_id``, ``churn_score`` (float in [0, 1]), ``model_name``, ``model_version``
    (str): one row per input row, same order and index. Raises
    :class:`ml.registry.NoModelError` when nothing is registered as ``model_name@alias``.
    """
    res = score_model(model_name, features, tracking_uri=tracking_uri, alias=alias, model_name=model_name, drift=False)
    return res.scores.rename(columns={"score": "churn_score"})

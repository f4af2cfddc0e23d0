"""MLflow registry helpers: clients, experiments, aliases, promotion and rollback.

Aliases, not stages: ``champion`` is what scoring loads, ``challenger`` is the latest
trained version. Every alias move is recorded as tags on the model versions and on the
registered model (``last_champion_change``), so the history can be read in the MLflow UI.

Training of every kind of model (classifiers in :mod:`ml.train`, uplift models in
:mod:`ml.uplift_train`) ends in the one path at the bottom of this module:
:func:`rescore_champion`, :func:`training_run`, :func:`register_and_promote`, with decisions
comparing through :func:`beats_champion` (a tie keeps the champion).

Always pass an explicit tracking URI (an absolute ``sqlite:///...`` one in practice);
nothing here falls back to ``./mlruns``.
"""

from __future__ import annotations

import getpass
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

CHAMPION = "champion"
CHALLENGER = "challenger"

# Model version tags written by promote / rollback / training.
TAG_PREVIOUS_CHAMPION = "previous_champion"
TAG_PROMOTED_AT = "promoted_at"
TAG_PROMOTION_REASON = "promotion_reason"
TAG_ROLLED_BACK_AT = "rolled_back_at"
TAG_ROLLBACK_REASON = "rollback_reason"
TAG_PROMOTED_BY = "promoted_by"
TAG_ROLLED_BACK_BY = "rolled_back_by"
TAG_DECISION = "decision"  # "champion" | "challenger": what training decided
TAG_DECISION_REASON = "decision_reason"
TAG_LAST_CHANGE = "last_champion_change"  # registered-model tag

_NOISY_LOGGERS = ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils")


class NoModelError(LookupError):
    """No registered model version behind the requested name / alias."""


def quiet_mlflow() -> None:
    """Turn off MLflow telemetry and the noisiest INFO logs (idempotent)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def quiet() -> Iterator[None]:
    """Silence deprecation noise that MLflow's own code triggers in its dependencies.

    (SQLAlchemy 2.1 ``noload`` deprecation from the SQL store, pandas 3 ``Pandas4Warning``
    from input-example handling, a ``UserWarning`` about ``Any`` type hints when
    ``mlflow.pyfunc`` is first imported.) Deprecations are hidden only when attributed to
    ``mlflow`` modules.
    """
    quiet_mlflow()
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category, module=r"mlflow(\.|$)")
        # Emitted once when mlflow.pyfunc is first imported (its own chat-agent types).
        warnings.filterwarnings("ignore", message=r".*Any type hint is inferred as AnyType", category=UserWarning)
        yield


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def whoami() -> str:
    """Who moves an alias by hand: ``$CRM_USER``, else the login name, else ``unknown``."""
    try:
        return os.environ.get("CRM_USER") or getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def _check_reason(reason: str) -> str:
    if not reason or not str(reason).strip():
        raise ValueError("a reason is required to move the champion alias")
    return str(reason).strip()


def _check_uri(tracking_uri: str) -> None:
    """Require a URI; for SQLite require an absolute path and create its directory."""
    if not tracking_uri:
        raise ValueError("tracking_uri is required (e.g. crm.config.paths().mlflow_tracking_uri)")
    if tracking_uri.startswith("sqlite:"):
        path = tracking_uri.removeprefix("sqlite:").removeprefix("///")
        if not path.startswith("/"):
            raise ValueError(f"SQLite tracking URI must be absolute (sqlite:////abs/path/mlflow.db): {tracking_uri}")
        os.makedirs(os.path.dirname(path) or "/", exist_ok=True)


def use_tracking_uri(tracking_uri: str) -> None:
    """Point the fluent API (``mlflow.start_run`` / ``log_*``) at this store and registry."""
    import mlflow

    quiet_mlflow()
    _check_uri(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)


def get_client(tracking_uri: str):
    """An ``MlflowClient`` whose tracking store and model registry are ``tracking_uri``."""
    from mlflow import MlflowClient

    quiet_mlflow()
    _check_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


# MLflow 3's UI opens an experiment by its kind (the tag the UI reads, values of its ExperimentKind):
# without it an experiment opens on the GenAI overview (traces, tokens), empty here. These are model
# training experiments: they open on their runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
_INFERRED_KINDS = ("", "genai_development_inferred", "custom_model_development_inferred", "no_inferred_type")


def ensure_experiment(client, name: str, artifact_location: str) -> str:
    """Id of experiment ``name``; created with ``artifact_location`` if missing, restored if deleted.

    A plain path is made absolute, so artifacts never land relative to the working directory. The
    experiment is marked as model training (:data:`EXPERIMENT_KIND_TAG`), also one created before
    the tag was set (a kind someone chose by hand is kept).
    """
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if (exp.tags or {}).get(EXPERIMENT_KIND_TAG, "") in _INFERRED_KINDS:
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
        return exp.experiment_id
    location = str(artifact_location)
    if "://" not in location:
        location = os.path.abspath(os.path.expanduser(location))
    return client.create_experiment(name, artifact_location=location,
                                    tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})


def run_name(prefix: str, lineage: dict | None, fallback: str) -> str:
    """``<prefix>-<as-of date>``: the run's as-of date (``lineage["as_of_date"]``, what Dagster passes:
    the run's partition), else ``fallback`` (the latest snapshot date the data describes)."""
    as_of = str((lineage or {}).get("as_of_date") or fallback or "").strip()
    return f"{prefix}-{as_of}" if as_of else prefix


def _is_missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def alias_version(client, name: str, alias: str):
    """The ``ModelVersion`` behind ``name@alias``, or ``None`` (also when the model is unknown)."""
    from mlflow.exceptions import MlflowException

    try:  # one cheap query in the common case (~2 ms against ~15 for the registered model)
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        if getattr(exc, "error_code", "") != "INVALID_PARAMETER_VALUE":
            raise
    # "alias not found" comes as INVALID_PARAMETER_VALUE: confirm on the registered model itself
    try:
        rm = client.get_registered_model(name)
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        raise
    version = (rm.aliases or {}).get(alias)
    if version is None:
        return None
    return client.get_model_version(name, str(version))


def champion_version(client, name: str):
    """The current champion ``ModelVersion`` of ``name`` or ``None``."""
    return alias_version(client, name, CHAMPION)


def require_version(client, name: str, alias: str = CHAMPION):
    """Like :func:`alias_version` but raises :class:`NoModelError` with a clear message."""
    mv = alias_version(client, name, alias)
    if mv is None:
        raise NoModelError(f"no model registered as {name}@{alias}: run training first")
    return mv


def get_version(client, name: str, version: str | int):
    """``ModelVersion`` ``version`` of ``name``; :class:`NoModelError` if either does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        if _is_missing(exc) or getattr(exc, "error_code", "") == "INVALID_PARAMETER_VALUE":
            raise NoModelError(f"{name} has no version {version}") from exc
        raise


def set_alias(client, name: str, alias: str, version: str | int) -> None:
    """Point ``name@alias`` at ``version``."""
    client.set_registered_model_alias(name, alias, str(version))


def version_metric(client, mv, key: str) -> float | None:
    """Metric ``key`` of the run that produced model version ``mv`` (None if absent)."""
    if not mv.run_id:
        return None
    return client.get_run(mv.run_id).data.metrics.get(key)


def _append_description(client, name: str, version: str, line: str) -> None:
    mv = client.get_model_version(name, version)
    text = f"{mv.description}\n{line}" if mv.description else line
    client.update_model_version(name, version, description=text[-4000:])


@quiet()
def promote(tracking_uri: str, model_name: str, version: str | int, reason: str, *, by: str | None = None):
    """Make ``version`` the champion; remember the previous champion for :func:`rollback`.

    ``reason`` is required; ``by`` (default :func:`whoami`) records who decided. Both are
    tagged on the version (``promotion_reason``, ``promoted_by``, ``promoted_at``) and in the
    registered model's ``last_champion_change``. Returns the promoted ``ModelVersion``.
    Promoting the current champion only records the reason.
    """
    reason = _check_reason(reason)
    by = by or whoami()
    client = get_client(tracking_uri)
    version = str(version)
    mv = get_version(client, model_name, version)
    prev = champion_version(client, model_name)
    ts = _now()
    if prev is not None and str(prev.version) == version:
        client.set_model_version_tag(model_name, version, TAG_PROMOTION_REASON, reason)
        client.set_model_version_tag(model_name, version, TAG_PROMOTED_BY, by)
        return mv
    set_alias(client, model_name, CHAMPION, version)
    client.set_model_version_tag(model_name, version, TAG_PROMOTED_AT, ts)
    client.set_model_version_tag(model_name, version, TAG_PROMOTION_REASON, reason)
    client.set_model_version_tag(model_name, version, TAG_PROMOTED_BY, by)
    client.set_model_version_tag(model_name, version, TAG_PREVIOUS_CHAMPION, str(prev.version) if prev else "")
    before = f"v{prev.version}" if prev else "none"
    client.set_registered_model_tag(
        model_name, TAG_LAST_CHANGE, f"{ts} promote {before} -> v{version} by {by}: {reason}"
    )
    _append_description(client, model_name, version, f"{ts} champion (was {before}) by {by}: {reason}")
    return client.get_model_version(model_name, version)


@quiet()
def rollback(
    tracking_uri: str,
    model_name: str,
    reason: str,
    *,
    by: str | None = None,
    to_version: str | int | None = None,
):
    """Move ``champion`` back to the version it replaced (or to ``to_version``).

    The rolled-back version keeps its history and gets ``rolled_back_at`` /
    ``rollback_reason`` / ``rolled_back_by`` tags; the restored version keeps its own
    ``previous_champion``, so repeated rollbacks walk further back. Returns the new champion
    ``ModelVersion``.
    """
    reason = _check_reason(reason)
    by = by or whoami()
    client = get_client(tracking_uri)
    current = require_version(client, model_name, CHAMPION)
    target = str(to_version) if to_version is not None else current.tags.get(TAG_PREVIOUS_CHAMPION, "")
    if not target:
        raise ValueError(f"{model_name}@champion (v{current.version}) has no previous champion to roll back to")
    if target == str(current.version):
        raise ValueError(f"v{target} is already {model_name}@champion")
    get_version(client, model_name, target)
    ts = _now()
    cur = str(current.version)
    set_alias(client, model_name, CHAMPION, target)
    client.set_model_version_tag(model_name, cur, TAG_ROLLED_BACK_AT, ts)
    client.set_model_version_tag(model_name, cur, TAG_ROLLBACK_REASON, reason)
    client.set_model_version_tag(model_name, cur, TAG_ROLLED_BACK_BY, by)
    client.set_registered_model_tag(model_name, TAG_LAST_CHANGE, f"{ts} rollback v{cur} -> v{target} by {by}: {reason}")
    _append_description(client, model_name, cur, f"{ts} rolled back to v{target} by {by}: {reason}")
    _append_description(client, model_name, target, f"{ts} champion again (rollback from v{cur}) by {by}: {reason}")
    return client.get_model_version(model_name, target)


def _iso_ms(ms) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@quiet()
def list_models(tracking_uri: str, name: str | None = None) -> list[dict]:
    """Registered models (or just ``name``) with their aliases and every version, newest first.

    Each model: ``name``, ``description``, ``aliases`` ({alias: version}), ``champion``,
    ``challenger``, ``last_champion_change``, ``versions``. Each version: ``version``,
    ``run_id``, ``created_at``, ``aliases`` (list), ``decision`` / ``decision_reason`` (what
    training decided), ``promotion_reason`` / ``promoted_by`` / ``promoted_at``,
    ``rollback_reason`` / ``rolled_back_by`` / ``rolled_back_at``, ``valid_as_of``, ``label``,
    ``tags`` (all version tags) and ``metrics`` (all metrics of the training run).
    """
    client = get_client(tracking_uri)
    out = []
    models = client.search_registered_models(max_results=1000)
    for rm in sorted(models, key=lambda m: m.name):
        if name is not None and rm.name != name:
            continue
        aliases = {a: str(v) for a, v in (rm.aliases or {}).items()}
        by_version: dict[str, list[str]] = {}
        for a, v in aliases.items():
            by_version.setdefault(v, []).append(a)
        mvs = client.search_model_versions(f"name = '{rm.name}'", max_results=10000)
        versions = [
            _version_entry(client, mv, by_version.get(str(mv.version), []))
            for mv in sorted(mvs, key=lambda m: int(m.version), reverse=True)
        ]
        out.append(
            {
                "name": rm.name,
                "description": rm.description,
                "aliases": aliases,
                "champion": aliases.get(CHAMPION),
                "challenger": aliases.get(CHALLENGER),
                "last_champion_change": (rm.tags or {}).get(TAG_LAST_CHANGE),
                "versions": versions,
            }
        )
    return out


def _version_entry(client, mv, aliases: list[str]) -> dict:
    """One version of :func:`list_models`: its tags, decisions and its training run's metrics."""
    tags = dict(mv.tags or {})
    metrics: dict[str, float] = {}
    run_tags: dict[str, str] = {}
    if mv.run_id:
        try:
            run = client.get_run(mv.run_id)
            metrics = dict(run.data.metrics)
            run_tags = dict(run.data.tags)
        except Exception:  # run deleted: the version still lists
            pass
    return {
        "version": str(mv.version),
        "run_id": mv.run_id,
        "created_at": _iso_ms(mv.creation_timestamp),
        "aliases": sorted(aliases),
        "decision": tags.get(TAG_DECISION),
        "decision_reason": tags.get(TAG_DECISION_REASON),
        "promotion_reason": tags.get(TAG_PROMOTION_REASON),
        "promoted_by": tags.get(TAG_PROMOTED_BY),
        "promoted_at": tags.get(TAG_PROMOTED_AT),
        "rollback_reason": tags.get(TAG_ROLLBACK_REASON),
        "rolled_back_by": tags.get(TAG_ROLLED_BACK_BY),
        "rolled_back_at": tags.get(TAG_ROLLED_BACK_AT),
        "valid_as_of": tags.get("valid_as_of") or run_tags.get("valid_as_of"),
        "label": tags.get("label") or run_tags.get("label"),
        "tags": tags,
        "metrics": metrics,
    }


def record_decision(
    client, tracking_uri: str, model_name: str, version: str, run_id: str, promoted: bool, decision: str, *, by: str
) -> None:
    """Apply a training decision: promote when asked, and tag the version and the run with it."""
    if promoted:
        promote(tracking_uri, model_name, version, decision, by=by)
    client.set_model_version_tag(model_name, version, TAG_DECISION, "champion" if promoted else "challenger")
    client.set_model_version_tag(model_name, version, TAG_DECISION_REASON, decision)
    client.set_tag(run_id, TAG_DECISION, decision)
    client.set_tag(run_id, "promoted", str(promoted).lower())
    client.set_tag(run_id, "model_version", version)


# ---------------------------------------------------------------------------- training: the one promotion path
#
# Classifiers (ml.train) and uplift models (ml.uplift_train) go through the same steps:
#
#   champion = rescore_champion(...)            # the champion's metric on today's evaluation rows
#   with training_run(...) as run_id:           # one MLflow run in the model's experiment
#       ... log params, metrics, artifacts ...
#       register_and_promote(...)               # log model, new version, challenger alias, decide, record
#
# and the decision compares with beats_champion: strictly better (a tie keeps the champion, so
# a rerun on the same data does not make a new champion version each time).


@dataclass(frozen=True)
class Champion:
    """The current champion of a model and its metric on the challenger's evaluation rows.

    ``note`` is set when the champion could not score those rows: ``metric`` is then the
    value logged when the champion was trained (or None if it logged none).
    """

    version: str
    metric: float | None
    note: str = ""

    @property
    def rescored(self) -> bool:
        """True when ``metric`` was computed on today's rows (not read from its training run)."""
        return self.metric is not None and not self.note


@dataclass(frozen=True)
class Promotion:
    """What :func:`register_and_promote` did: the new version and the decision on it."""

    version: str
    promoted: bool
    decision: str
    run_id: str


def beats_champion(value: float, champion_value: float, margin: float = 0.0) -> bool:
    """Whether a challenger's metric is strictly above the champion's plus ``margin``.

    A tie keeps the champion (so does NaN on either side).
    """
    return value > champion_value + margin


def rescore_champion(
    client,
    model_name: str,
    score: Callable[[object], float],
    *,
    metric: str,
    fallback_note: Callable[[Exception], str],
) -> Champion | None:
    """The champion of ``model_name`` with ``score(champion ModelVersion)``; None without a champion.

    When scoring fails (e.g. a column it needs is gone), the champion's logged ``metric`` is
    used instead, with ``fallback_note(exc)`` as the note.
    """
    mv = champion_version(client, model_name)
    if mv is None:
        return None
    try:
        return Champion(str(mv.version), score(mv))
    except Exception as exc:  # noqa: BLE001 - any failure falls back to the logged metric
        return Champion(str(mv.version), version_metric(client, mv, metric), fallback_note(exc))


def connect(tracking_uri: str):
    """Point the fluent API at ``tracking_uri`` and return a client on the same store."""
    use_tracking_uri(tracking_uri)
    return get_client(tracking_uri)


@contextmanager
def training_run(
    client, experiment: str, artifact_location: str, *, run_name: str, tags: dict[str, str]
) -> Iterator[str]:
    """An active MLflow run (its id) in ``experiment``, created with ``artifact_location`` if new.

    Call :func:`connect` first: the run is started through the fluent API.
    """
    with quiet():
        import mlflow

        experiment_id = ensure_experiment(client, experiment, artifact_location)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            yield run.info.run_id


def pip_requirements(*extra: str) -> list[str]:
    """Pinned requirements of a logged model (skips MLflow's slow subprocess inference)."""
    from importlib.metadata import version

    pinned = [f"{pkg}=={version(pkg)}" for pkg in ("lightgbm", "scikit-learn", "skops", "numpy", "pandas")]
    return [*pinned, *extra]


def register_version(client, model_name: str, description: str, model_info, run_id: str, tags: dict[str, str]):
    """Create (if needed) the registered model and a new version from the logged model.

    Done through the client rather than ``log_model(registered_model_name=...)``, which
    prints "Successfully registered model ..." to stderr.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model_name, description=description)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    return client.create_model_version(
        name=model_name,
        source=model_info.model_uri,
        run_id=run_id,
        tags=tags,
        model_id=getattr(model_info, "model_id", None),
    )


@dataclass(frozen=True)
class Candidate:
    """A model about to be logged in the active run and registered as a new version of ``model_name``."""

    model_name: str
    description: str
    log_model: Callable[[], object]  # logs the model in the active run, returns its ModelInfo
    version_tags: dict[str, str] = field(default_factory=dict)


def register_and_promote(
    client,
    tracking_uri: str,
    run_id: str,
    candidate: Candidate,
    champion: Champion | None,
    decide: Callable[[Champion | None], tuple[bool, str]],
    *,
    by: str,
) -> Promotion:
    """The one register-and-promote path of every trained model (inside its training run).

    Logs the model, registers it as a new version, points ``challenger`` at it, asks
    ``decide(champion)`` whether it becomes champion (decisions compare with
    :func:`beats_champion`: a tie keeps the champion), promotes it if so and records the
    decision on the version and the run (``champion_before`` too when there was a champion).
    """
    info = candidate.log_model()
    mv = register_version(client, candidate.model_name, candidate.description, info, run_id, candidate.version_tags)
    version = str(mv.version)
    set_alias(client, candidate.model_name, CHALLENGER, version)
    promoted, decision = decide(champion)
    record_decision(client, tracking_uri, candidate.model_name, version, run_id, promoted, decision, by=by)
    if champion is not None:
        client.set_tag(run_id, "champion_before", champion.version)
    return Promotion(version, promoted, decision, run_id)

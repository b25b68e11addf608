"""Experiment tracking: the only module that imports MLflow.

Train starts a run and stores its id in the checkpoint folder (``run_id``); later stages open the
same run with :meth:`Tracker.resume`. The store is ``tracking.uri`` if set, else
``MLFLOW_TRACKING_URI``, else an SQLite file in the project (absolute path: DVC may run stages
outside the workspace). With ``tracking.enabled=false`` every call is a no-op.

Sweeps: :class:`Runs` writes to runs by id (a sweep's parent stays open while its trials run),
and inside :func:`nested_under` every run a stage starts is a child of the sweep's parent.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from triage.io import sha256_file

RUN_ID_FILE = "run_id"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-4}}`` -> ``{"train.lr": 1e-4}``; lists become strings."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = (
                value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
            )
    return flat


def git_state(root: Path) -> dict[str, str]:
    """The commit and whether the working tree differs from it (``unknown`` outside git)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {
            "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": str(bool(git("status", "--porcelain", "--untracked-files=no"))),
        }
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}


def fingerprint(path: Path) -> str:
    """sha256 of a file's bytes (first 16 hex digits): which exact data a run saw."""
    return sha256_file(path)[:16]


def default_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve()}/mlflow.db"


def artifact_root(uri: str) -> str | None:
    """Artifacts of an SQLite store go beside the database file (MLflow's default, ./mlruns
    under the working directory, would scatter them wherever a stage was started)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return None


class Tracker:
    """A thin MLflow wrapper that can be switched off.

    Args:
        enabled: False makes every method a no-op (``run_id`` stays None).
        uri: tracking URI; None uses :func:`default_uri`.
        experiment: experiment name.
        root: project folder, for the default URI.
    """

    def __init__(self, enabled: bool, uri: str | None, experiment: str, root: Path):
        self.enabled = enabled
        self.run_id: str | None = None
        if enabled:
            import mlflow

            self._mlflow = mlflow
            uri = uri or default_uri(root)
            mlflow.set_tracking_uri(uri)
            if mlflow.get_experiment_by_name(experiment) is None:
                mlflow.create_experiment(experiment, artifact_location=artifact_root(uri))
            mlflow.set_experiment(experiment)

    def start(self, run_name: str | None, tags: dict[str, str]) -> None:
        if self.enabled:
            self.run_id = self._mlflow.start_run(run_name=run_name, tags=tags).info.run_id

    def resume(self, run_id: str) -> None:
        if self.enabled:
            self.run_id = self._mlflow.start_run(run_id=run_id).info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        if self.enabled:
            # MLflow caps a param value at 6,000 characters (long label maps)
            self._mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.enabled:
            # MLflow metric names allow letters, digits, _ - . / and space
            self._mlflow.log_metrics(
                {_metric_name(k): float(v) for k, v in metrics.items()}, step=step
            )

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        if self.enabled:
            self._mlflow.log_artifact(str(path), artifact_path=folder)

    def log_text(self, text: str, name: str) -> None:
        if self.enabled:
            self._mlflow.log_text(text, name)

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            self._mlflow.end_run(status=status)


def _metric_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)


def read_run_id(checkpoint: Path) -> str | None:
    """The MLflow run id stored next to a checkpoint, if any."""
    path = Path(checkpoint) / RUN_ID_FILE
    return path.read_text().strip() or None if path.is_file() else None


def add_to_checkpoint_run(
    tracking: Any,
    root: Path,
    checkpoint: Path,
    metrics: dict[str, float],
    artifacts: list[tuple[Path, str]],
) -> None:
    """Log metrics and ``(file, folder)`` artifacts into the MLflow run whose id is stored next
    to ``checkpoint`` (nothing when tracking is off or the checkpoint has no run)."""
    run_id = read_run_id(checkpoint)
    if not (tracking.enabled and run_id):
        return
    tracker = Tracker(True, tracking.uri, tracking.experiment, root)
    tracker.resume(run_id)
    tracker.log_metrics(metrics)
    for path, folder in artifacts:
        tracker.log_artifact(path, folder)
    tracker.end()


# --- Sweeps: a parent run, one nested child run per trial --------------------------------------

PARENT_TAG = "mlflow.parentRunId"  # the tag by which MLflow nests a run under another
RUN_CONTEXT_ENV = "MLFLOW_RUN_CONTEXT"  # JSON tags MLflow adds to every run it starts


@contextmanager
def nested_under(parent_run_id: str | None, tags: dict[str, str]) -> Iterator[None]:
    """Every MLflow run started inside the block is a child of ``parent_run_id`` (when given)
    and carries ``tags``.

    MLflow adds the JSON in ``MLFLOW_RUN_CONTEXT`` to the tags of each run it starts, so the
    stages start their runs as usual and know nothing of sweeps. One block at a time per process
    (a sweep worker runs one trial at a time).
    """
    context = {**tags, **({PARENT_TAG: parent_run_id} if parent_run_id else {})}
    previous = os.environ.get(RUN_CONTEXT_ENV)
    os.environ[RUN_CONTEXT_ENV] = json.dumps(context)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RUN_CONTEXT_ENV, None)
        else:
            os.environ[RUN_CONTEXT_ENV] = previous


class Runs:
    """Writes to MLflow runs by id without making any of them the active run, so one process can
    keep a sweep's parent run open while its trials start and end their own runs.

    Args:
        enabled: False makes every method a no-op (``create`` returns None).
        uri: tracking URI; None uses :func:`default_uri`.
        experiment: experiment name (created if missing).
        root: project folder, for the default URI.
    """

    def __init__(self, enabled: bool, uri: str | None, experiment: str, root: Path):
        self.enabled = enabled
        if enabled:
            import mlflow

            Tracker(True, uri, experiment, root)  # points MLflow at the store, makes the experiment
            self._client = mlflow.MlflowClient()
            self._experiment_id = mlflow.get_experiment_by_name(experiment).experiment_id

    def create(self, run_name: str, tags: dict[str, str]) -> str | None:
        """Start a new run (status RUNNING); its id."""
        if not self.enabled:
            return None
        run = self._client.create_run(self._experiment_id, tags=tags, run_name=run_name)
        return run.info.run_id

    def reopen(self, run_id: str | None) -> bool:
        """Set an existing run's status back to RUNNING; False when this store has no such run
        (or it was deleted)."""
        if not (self.enabled and run_id):
            return False
        try:
            run = self._client.get_run(run_id)
        except Exception:  # MlflowException: not in this store
            return False
        if run.info.lifecycle_stage == "deleted":
            return False
        self._client.update_run(run_id, status="RUNNING")
        return True

    def log_params(self, run_id: str | None, params: dict[str, Any]) -> None:
        """Log the parameters the run does not have yet (MLflow never changes a logged value:
        a resumed sweep keeps its first values)."""
        if not (self.enabled and run_id):
            return
        from mlflow.entities import Param

        logged = self._client.get_run(run_id).data.params
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in logged]
        for start in range(0, len(new), 100):  # MLflow's batch limit for params
            self._client.log_batch(run_id, params=new[start : start + 100])

    def log_metrics(
        self, run_id: str | None, metrics: dict[str, float], step: int | None = None
    ) -> None:
        if not (self.enabled and run_id):
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(_metric_name(k), float(v), now, step or 0) for k, v in metrics.items()]
        for start in range(0, len(batch), 1000):  # MLflow's batch limit for metrics
            self._client.log_batch(run_id, metrics=batch[start : start + 1000])

    def set_tags(self, run_id: str | None, tags: dict[str, str]) -> None:
        if not (self.enabled and run_id):
            return
        from mlflow.entities import RunTag

        self._client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, run_id: str | None, path: Path, folder: str | None = None) -> None:
        if self.enabled and run_id:
            self._client.log_artifact(run_id, str(path), artifact_path=folder)

    def end(self, run_id: str | None, status: str = "FINISHED") -> None:
        """Mark the run ended: FINISHED, FAILED or KILLED."""
        if self.enabled and run_id:
            self._client.set_terminated(run_id, status=status)


# ------------------------------------------------------------------------------------------
# The model registry: bundles as MLflow model versions with the aliases champion / challenger


class Registry:
    """Bundles registered as versions of one MLflow model (``name``), with aliases.

    Args:
        uri: tracking URI (the registry lives in the same store); None uses :func:`default_uri`.
        root: project folder, for the default URI.
        name: the registered model's name.
    """

    def __init__(self, uri: str | None, root: Path, name: str) -> None:
        import mlflow
        from mlflow import MlflowClient

        self.uri = uri or default_uri(root)
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri, registry_uri=self.uri)
        self.name = name
        self._mlflow = mlflow

    def register(self, bundle: Path, run_id: str, tags: dict[str, str]) -> str:
        """Log the bundle folder as artifacts of ``run_id`` (``bundle/``) and register it as a
        new version; return the version number."""
        self.client.log_artifacts(run_id, str(bundle), "bundle")
        if not self.client.search_registered_models(f"name = '{self.name}'"):
            self.client.create_registered_model(self.name)
        version = self.client.create_model_version(
            self.name, f"runs:/{run_id}/bundle", run_id=run_id, tags=tags
        )
        return str(version.version)

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.name, alias, version)

    def delete_alias(self, alias: str) -> None:
        self.client.delete_registered_model_alias(self.name, alias)

    def tag(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, value)

    def version_of(self, alias: str) -> dict[str, Any] | None:
        """The version an alias points at (``version``, ``tags``, ``run_id``), or None."""
        from mlflow.exceptions import MlflowException

        try:
            version = self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException:
            return None
        return {
            "version": str(version.version),
            "tags": dict(version.tags),
            "run_id": version.run_id,
        }

    def download(self, alias: str, dest: Path) -> Path:
        """The bundle an alias points at, downloaded into ``dest``; the local folder."""
        dest.mkdir(parents=True, exist_ok=True)
        local = self._mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{self.name}@{alias}", dst_path=str(dest)
        )
        return Path(local)

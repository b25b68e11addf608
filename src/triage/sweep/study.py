"""The Optuna study a sweep's sessions, workers and ``sweep-promote`` share: its storage (with
heartbeats), the retry of failed trials, what a trial records and which trial is best."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna

from triage.config import Config, SweepConfig, to_container
from triage.errors import ConfigError
from triage.sweep.objective import Objective

PARENT_ATTR = "mlflow_parent_run_id"  # study user attribute: the sweep's MLflow parent run
CONFIG_ATTR = "config"  # trial user attribute: data name and the groups below, resolved
PROMOTED_GROUPS = ("train", "model", "calibrate")  # what a trial's config can change
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
MAX_RETRY = 1  # a failed trial runs once more with the same values; a failed retry does not


def require_sweep(cfg: Config) -> SweepConfig:
    """``cfg.sweep``, or an error that lists the search spaces."""
    if cfg.sweep is None:
        spaces = sorted(p.stem for p in (Path(cfg.paths.root) / "configs" / "sweep").glob("*.yaml"))
        raise ConfigError(f"choose a search space: sweep=<name>, one of {spaces}")
    return cfg.sweep


def objective_of(cfg: Config) -> Objective:
    """The sweep's objective, checked against the calibration's FPR target."""
    return Objective(**to_container(cfg.sweep.objective), fpr_target=cfg.calibrate.fpr_target)


def storage(scfg: SweepConfig) -> optuna.storages.RDBStorage:
    """The study's database, with heartbeats: a trial whose worker died (no heartbeat for three
    intervals) is marked failed and queued again with the same values."""
    if scfg.storage.startswith("sqlite:///"):
        Path(scfg.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            scfg.storage,
            heartbeat_interval=scfg.heartbeat_s,
            grace_period=3 * scfg.heartbeat_s,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRY
            ),
        )


def count(study: optuna.Study, states: tuple[optuna.trial.TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The complete trial with the highest objective (a pruned trial's value is only its last
    intermediate metric); None before the first complete trial."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value) if complete else None


def retry_failed(study: optuna.Study) -> int:
    """Queue each failed trial once more with the same values (an interrupted or crashed
    trial), unless it is itself a retry or was queued already (a dead worker's trial is queued
    by the heartbeat check). Returns how many were queued."""
    trials = study.get_trials(deepcopy=False)
    queued = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    failed = [
        t
        for t in trials
        if t.state == optuna.trial.TrialState.FAIL
        and t.params
        and t.number not in queued
        and len(t.system_attrs.get("retry_history", [])) < MAX_RETRY
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        again = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        for trial in failed:
            again(study, trial)
    return len(failed)

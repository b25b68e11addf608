"""The study's storage: a dead worker's trial is queued again once, never twice."""

from __future__ import annotations

import time
import warnings

import optuna
import pytest

from triage.config import load_config
from triage.sweep.study import retry_failed, storage


@pytest.mark.slow
def test_a_dead_workers_trial_is_queued_again_once(root, tmp_path):
    cfg = load_config(
        ["sweep=quick", "sweep.heartbeat_s=1", f"sweep.storage=sqlite:///{tmp_path}/s.db"],
        root=root,
    )
    study = optuna.create_study(study_name="quick", storage=storage(cfg.sweep))
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-5, 1e-3)})
    study._storage.record_heartbeat(trial._trial_id)  # then the worker is killed (SIGKILL)
    time.sleep(5)  # three missed heartbeats (the store counts whole seconds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # what the next worker does before a trial
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "WAITING"]
    assert study.trials[1].params == study.trials[0].params
    assert retry_failed(study) == 0  # a resumed sweep does not queue it twice

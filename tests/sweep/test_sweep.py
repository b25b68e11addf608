"""A real tiny sweep on the tiny encoder: interrupted, resumed (finished trials are not re-run),
nested in MLflow and promoted to an experiment file."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import optuna
import pytest

from triage.config import load_config
from triage.sweep import trial as trial_stage
from triage.sweep.promote import run as promote
from triage.sweep.run import run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_sweep(tiny_encoder, tmp_path_factory):
    """A project copy in a tmp folder (configs, authored data), prepared; a quick sweep of 2
    trials on the tiny encoder; a session interrupted as its third trial starts; a session that
    resumes to 3 trials. Returns the folder, the command, the train calls of each session, the
    MLflow client and the study."""
    import mlflow

    from triage.pipeline.prepare import run as prepare

    tmp = tmp_path_factory.mktemp("sweep")
    shutil.copytree(ROOT / "configs", tmp / "configs")
    (tmp / "data").mkdir()
    (tmp / "data" / "authored").symlink_to(ROOT / "data" / "authored")
    command = [
        "sweep=quick",
        f"sweep.storage=sqlite:///{tmp}/optuna.db",
        f"model.encoder={tiny_encoder}",
        "train.max_train_rows=160",
        "calibrate.min_decisions=10",
        "evaluate.bootstrap=20",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
    ]
    prepare(load_config(command, root=tmp))
    calls: list[list[int]] = []
    real_train = trial_stage.train

    def counting_train(cfg, on_epoch=None):
        calls[-1].append(int(Path(cfg.train.out_dir).parent.name.removeprefix("trial_")))
        if interrupt:
            raise KeyboardInterrupt  # Ctrl-C as the trial starts
        return real_train(cfg, on_epoch=on_epoch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trial_stage, "train", counting_train)
        for n_trials, interrupt in ((2, False), (3, True), (3, False)):
            calls.append([])
            overrides = [*command, f"sweep.n_trials={n_trials}"]
            if interrupt:
                with pytest.raises(SystemExit):
                    run(load_config(overrides, root=tmp), overrides)
            else:
                run(load_config(overrides, root=tmp), overrides)
    study = optuna.load_study(study_name="quick", storage=f"sqlite:///{tmp}/optuna.db")
    return tmp, command, calls, mlflow.MlflowClient(f"sqlite:///{tmp}/mlflow.db"), study


def test_a_resumed_sweep_does_not_repeat_finished_trials(tiny_sweep):
    tmp, _, calls, _, study = tiny_sweep
    assert calls == [[0, 1], [2], [3]]  # session 3 ran only the retry of the interrupted trial
    states = {t.number: t.state.name for t in study.trials}
    assert states[2] == "FAIL" and {states[n] for n in (0, 1, 3)} <= {"COMPLETE", "PRUNED"}
    assert study.trials[3].params == study.trials[2].params  # queued again, same values
    assert study.trials[3].system_attrs["retry_history"] == [2]
    summary = (tmp / "models" / "sweeps" / "quick" / "summary.csv").read_text().splitlines()
    header = summary[0].split(",")
    assert header[:2] == ["trial", "state"] and "train.lr" in header
    assert {"objective", "macro_f1", "worst_fpr", "ece", "coverage", "duration_s"} <= set(header)
    assert len(summary) == 1 + 4
    assert not list((tmp / "models" / "sweeps" / "quick").glob("trial_*/checkpoint"))
    best = json.loads((tmp / "models" / "sweeps" / "quick" / "best.json").read_text())
    assert best["objective"] == study.best_value  # the best complete trial, never a pruned one
    assert best["overrides"][0] == "experiment=quick"


def test_a_sweep_is_one_parent_run_with_nested_trial_runs(tiny_sweep):
    _, _, _, client, study = tiny_sweep
    experiment = client.get_experiment_by_name("social-triage")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("stage") == "sweep"]
    assert len(parents) == 1  # the resumed sessions reopened it
    parent = parents[0]
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(r.data.tags["sweep.trial"]) for r in children) == [0, 1, 3]
    assert len(runs) == 4
    for child in children:
        assert child.data.params["train.lr"] and child.data.params["evaluate.split"] == "val"
        if child.data.tags["sweep.state"] == "COMPLETE":
            assert child.info.status == "FINISHED" and "sweep/objective" in child.data.metrics
        else:
            assert child.info.status == "KILLED"
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best/objective"] == pytest.approx(study.best_value)
    best = {"best/macro_f1", "best/ece", "best/worst_fpr", "best/coverage", "best/trial"}
    assert best <= set(parent.data.metrics)
    assert parent.data.tags["best.trial"] == str(study.best_trial.number)
    assert parent.data.params["sweep.study_name"] == "quick"
    files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.md", "summary.csv", "best.json", "search_space.yaml"} <= files


def test_promote_writes_an_experiment_that_reproduces_the_best_trial(tiny_sweep, caplog):
    tmp, command, _, _, study = tiny_sweep
    best = study.best_trial
    config_yaml = (tmp / "configs" / "config.yaml").read_text()
    with caplog.at_level(logging.INFO, logger="triage.sweep.promote"):
        promote(load_config(command, root=tmp))
    text = (tmp / "configs" / "experiment" / "quick_best.yaml").read_text()
    assert text.startswith("# @package _global_\n") and f"trial {best.number}" in text
    cfg = load_config(["experiment=quick_best"], root=tmp)
    assert cfg.train.lr == pytest.approx(best.params["train.lr"])
    assert cfg.train.max_train_rows == 160 and cfg.model.max_length == 64  # all it trained with
    assert cfg.train.out_dir == load_config([], root=tmp).train.out_dir  # no trial paths
    # tracked config files stay as they are; the log says how to use the experiment
    assert (tmp / "configs" / "config.yaml").read_text() == config_yaml
    assert "train it with `triage train experiment=quick_best`" in caplog.text
    assert "set `experiment: quick_best` in the defaults of configs/config.yaml" in caplog.text

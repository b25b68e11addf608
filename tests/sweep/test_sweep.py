"""Sweeps: configs compose, the objective ranks trials that break the FPR target last, pruning,
and a real tiny sweep that is interrupted, resumed (finished trials are not re-run), nested in
MLflow and promoted to an experiment file."""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

import optuna
import pytest

from triage.cli import main
from triage.config import ConfigError, load_config, parse_search_space
from triage.sweep import study as sweep_stage
from triage.sweep.objective import Objective
from triage.sweep.promote import run as promote
from triage.sweep.study import hydra_value, pruning, trial_base

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = sorted(p.stem for p in (ROOT / "configs" / "sweep").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))
KEY = "val/intent/macro_f1"


def corners(space: dict) -> list[list[str]]:
    """Override lists that put every dimension at each end (and every choice) once."""
    points: list[dict] = [{}, {}]
    for key, dim in space.items():
        values = dim["choices"] if dim["kind"] == "categorical" else [dim["low"], dim["high"]]
        while len(points) < len(values):
            points.append({})
        for i, point in enumerate(points):
            point[key] = (dim["override"], values[i % len(values)])
    return [[f"{o}={hydra_value(v)}" for o, v in p.values()] for p in points]


@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
@pytest.mark.parametrize("name", SWEEPS)
def test_every_sweep_config_composes_with_every_experiment(root, name, experiment):
    command = [f"sweep={name}"] + ([f"experiment={experiment}"] if experiment else [])
    cfg = load_config(command, root=root)
    assert cfg.sweep.study_name and cfg.sweep.out_dir.startswith(str(root))
    space = parse_search_space(list(cfg.sweep.params))
    assert space, f"sweep={name} searches nothing"
    sweep_stage.objective_of(cfg)  # the penalty ranks broken trials last
    sweep_stage.pruner(cfg.sweep.pruner)
    base = trial_base(command, cfg.sweep, space)
    assert not any(o.startswith("sweep") for o in base)  # a trial's run holds no sweep config
    for chosen in corners(space):
        trial = load_config([*base, *chosen], root=root)
        assert trial.sweep is None
        for override in chosen:
            key, value = override.lstrip("+").split("=", 1)
            group, field, *rest = key.split(".")
            node = trial[group][field]
            assert str(node[rest[0]] if rest else node).lower() == value.strip("'").lower()


def test_sweep_config_errors_say_what_to_do(root, capsys):
    assert main(["sweep"]) == 1
    err = capsys.readouterr().err
    assert "choose a search space: sweep=<name>, one of [" in err and "'quick'" in err
    with pytest.raises(ConfigError, match="is not a sweep"):
        parse_search_space(["train.epochs=3"])
    cfg = load_config(["sweep=quick"], root=root)
    space = parse_search_space(list(cfg.sweep.params))
    with pytest.raises(ConfigError, match=r"train\.lr is searched"):
        trial_base(["sweep=quick", "train.lr=1e-4"], cfg.sweep, space)
    with pytest.raises(ConfigError, match="choose a search space"):
        sweep_stage.require_sweep(load_config([], root=root))
    assert hydra_value("a b'c") == "'a b\\'c'" and hydra_value(True) == "true"
    assert load_config([f"tracking.run_name={hydra_value('a b')}"], root=root).tracking.run_name


def metrics(f1: float, ece: float, **shares: float) -> dict:
    out = {"val/intent/macro_f1": f1, "val/intent/ece": ece, "val/intent/coverage": 0.5}
    out |= {f"val/{k.replace('__', '/')}": v for k, v in shares.items()}
    return out


def test_objective_penalises_a_trial_that_breaks_the_fpr_target():
    objective = Objective("intent", "macro_f1", "ece", 0.01, 2.0, fpr_target=0.05)
    good = objective(metrics(0.80, 0.05, intent__auto_fpr__spam=0.05, intent__auto_fpr__other=0.0))
    assert good.compliant and good.value == pytest.approx(0.80 - 0.01 * 0.05)
    assert good.worst_class == "intent/spam" and good.coverage == 0.5
    # better macro-F1, but one class's automated decisions are wrong 10% of the time
    broken = objective(metrics(0.95, 0.01, intent__auto_fpr__spam=0.10))
    assert not broken.compliant and broken.worst_fpr == 0.10
    assert broken.value == pytest.approx(0.95 - 0.0001 - 2.0 - 0.05)
    worst_compliant = objective(metrics(0.0, 1.0))  # the lowest a compliant trial can score
    assert broken.value < worst_compliant.value < good.value
    worse = objective(metrics(0.95, 0.01, intent__auto_fpr__spam=0.30))
    assert worse.value < broken.value  # a bigger breach ranks lower
    # the sentiment head's automated decisions count too; per-language slices do not
    assert not objective(metrics(0.9, 0.0, sentiment__auto_fpr__negative=0.2)).compliant
    assert objective(metrics(0.9, 0.0, **{"intent__nl__auto_fpr__spam": 0.5})).compliant
    # ECE breaks ties
    assert objective(metrics(0.9, 0.02)).value > objective(metrics(0.9, 0.08)).value
    with pytest.raises(ValueError, match="must exceed 1 \\+ tie_weight"):
        Objective("intent", "macro_f1", "ece", 0.01, 1.0, fpr_target=0.05)
    with pytest.raises(KeyError, match="val/intent/accuracy"):
        Objective("intent", "accuracy", "ece", 0.01, 2.0, 0.05)(metrics(0.9, 0.0))


def test_pruning_callback_prunes_on_a_fake_study():
    study = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )
    first = study.ask()
    for epoch in (1, 2, 3):
        pruning(first, KEY, epochs=3)(epoch, {KEY: 0.9})
    study.tell(first, 0.9)
    good = study.ask()
    pruning(good, KEY, epochs=3)(1, {KEY: 0.95})  # above the median: goes on
    bad = study.ask()
    with pytest.raises(optuna.TrialPruned, match="after epoch 1"):
        pruning(bad, KEY, epochs=3)(1, {KEY: 0.1})
    last = study.ask()
    pruning(last, KEY, epochs=1)(1, {KEY: 0.1})  # never after the last epoch
    with pytest.raises(KeyError, match="no per-epoch"):
        pruning(study.ask(), KEY, epochs=3)(1, {})


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
    real_train = sweep_stage.train

    def counting_train(cfg, on_epoch=None):
        calls[-1].append(int(Path(cfg.train.out_dir).parent.name.removeprefix("trial_")))
        if interrupt:
            raise KeyboardInterrupt  # Ctrl-C as the trial starts
        return real_train(cfg, on_epoch=on_epoch)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep_stage, "train", counting_train)
        for n_trials, interrupt in ((2, False), (3, True), (3, False)):
            calls.append([])
            overrides = [*command, f"sweep.n_trials={n_trials}"]
            if interrupt:
                with pytest.raises(SystemExit):
                    sweep_stage.run(load_config(overrides, root=tmp), overrides)
            else:
                sweep_stage.run(load_config(overrides, root=tmp), overrides)
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


def test_promote_writes_an_experiment_that_reproduces_the_best_trial(tiny_sweep):
    tmp, command, _, _, study = tiny_sweep
    best = study.best_trial
    promote(load_config(command, root=tmp))
    text = (tmp / "configs" / "experiment" / "quick_best.yaml").read_text()
    assert text.startswith("# @package _global_\n") and f"trial {best.number}" in text
    cfg = load_config(["experiment=quick_best"], root=tmp)
    assert cfg.train.lr == pytest.approx(best.params["train.lr"])
    assert cfg.train.max_train_rows == 160 and cfg.model.max_length == 64  # all it trained with
    assert cfg.train.out_dir == load_config([], root=tmp).train.out_dir  # no trial paths
    promote(load_config([*command, "sweep.set_default=true"], root=tmp))
    assert "  - experiment: quick_best\n" in (tmp / "configs" / "config.yaml").read_text()
    assert load_config([], root=tmp).train.lr == pytest.approx(best.params["train.lr"])


def test_a_dead_workers_trial_is_queued_again_once(root, tmp_path):
    cfg = load_config(
        ["sweep=quick", "sweep.heartbeat_s=1", f"sweep.storage=sqlite:///{tmp_path}/s.db"],
        root=root,
    )
    study = optuna.create_study(study_name="quick", storage=sweep_stage.storage(cfg.sweep))
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-5, 1e-3)})
    study._storage.record_heartbeat(trial._trial_id)  # then the worker is killed (SIGKILL)
    time.sleep(5)  # three missed heartbeats (the store counts whole seconds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # what the next worker does before a trial
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "WAITING"]
    assert study.trials[1].params == study.trials[0].params
    assert sweep_stage.retry_failed(study) == 0  # a resumed sweep does not queue it twice

"""One trial of a sweep: compose its config, train (the pruner sees every epoch), calibrate,
evaluate on val and score it with the sweep's objective.

The pipeline is reached only through the stages' entry points (``train``, ``calibrate``,
``evaluate``), with the trial's config; inside :func:`~triage.tracking.nested_under` the training
run is a child of the sweep's MLflow parent.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna

from triage.config import Config, SweepConfig, load_config, to_container, to_yaml
from triage.errors import ConfigError
from triage.io import write_atomic
from triage.pipeline.calibrate import run as calibrate
from triage.pipeline.evaluate import run as evaluate
from triage.pipeline.train import run as train
from triage.sweep.objective import MissingMetricError
from triage.sweep.space import hydra_value, override_key, parse_search_space, sample
from triage.sweep.study import CONFIG_ATTR, PROMOTED_GROUPS, objective_of
from triage.tracking import Runs, nested_under, read_run_id

log = logging.getLogger(__name__)


def trial_base(overrides: list[str], scfg: SweepConfig, space: dict[str, Any]) -> list[str]:
    """What every trial composes before its sampled values: ``sweep.overrides``, then the
    command's overrides without the sweep's own (so a trial's run holds the pipeline config).

    Raises:
        ConfigError: the command sets a key that the search space samples.
    """
    command = [o for o in overrides if override_key(o).split(".")[0] != "sweep"]
    clash = sorted({override_key(o) for o in command} & set(space))
    if clash:
        raise ConfigError(
            f"{', '.join(clash)} is searched by sweep.params; drop it from the command or "
            "from the search space"
        )
    return [*scfg.overrides, *command]


def pruning(trial: optuna.Trial, key: str, epochs: int) -> Callable[[int, dict[str, float]], None]:
    """The epoch callback of a trial's training: reports ``metrics[key]`` and stops the trial
    (``optuna.TrialPruned``) when the pruner says so, except after the last epoch."""

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        if key not in metrics:
            raise MissingMetricError(f"no per-epoch {key} to prune on; check sweep.objective")
        trial.report(metrics[key], epoch)
        if epoch < epochs and trial.should_prune():
            raise optuna.TrialPruned(f"{key} {metrics[key]:.4f} after epoch {epoch}")

    return on_epoch


def trial_paths(folder: Path, study_name: str, number: int) -> list[str]:
    """A trial's fixed output paths, val evaluation and MLflow run name."""
    checkpoint, calibration, evaluation = (
        hydra_value(str(folder / name)) for name in ("checkpoint", "calibration.json", "evaluation")
    )
    return [
        f"train.out_dir={checkpoint}",
        f"calibrate.checkpoint={checkpoint}",
        f"calibrate.out_file={calibration}",
        f"evaluate.checkpoint={checkpoint}",
        f"evaluate.calibration={calibration}",
        f"evaluate.out_dir={evaluation}",
        "evaluate.split=val",
        "evaluate.compare_with=null",
        f"tracking.run_name={study_name}-trial_{number}",
    ]


def run_trial(trial: optuna.Trial, base: list[str], cfg: Config, parent: str | None) -> float:
    """Train, calibrate and evaluate one sampled config; its objective value."""
    scfg, root = cfg.sweep, Path(cfg.paths.root)
    space = parse_search_space(list(scfg.params))
    objective = objective_of(cfg)
    values = sample(trial, space)
    chosen = [f"{dim['override']}={hydra_value(values[k])}" for k, dim in space.items()]
    trial.set_user_attr("overrides", [*base, *chosen])
    folder = Path(scfg.out_dir) / f"trial_{trial.number}"
    shutil.rmtree(folder, ignore_errors=True)  # left by an earlier study of the same name
    tcfg = load_config([*base, *chosen, *trial_paths(folder, scfg.study_name, trial.number)], root)
    write_atomic(folder / "config.yaml", lambda p: p.write_text(to_yaml(tcfg)))
    trial.set_user_attr(
        CONFIG_ATTR,
        {"data": tcfg.data.name, **{g: to_container(getattr(tcfg, g)) for g in PROMOTED_GROUPS}},
    )
    log.info("trial %d: %s", trial.number, values)
    runs = Runs(tcfg.tracking.enabled, tcfg.tracking.uri, tcfg.tracking.experiment, root)
    checkpoint = Path(tcfg.train.out_dir)
    tags = {"sweep.study": scfg.study_name, "sweep.trial": str(trial.number)}
    key = f"val/{objective.head}/{objective.metric}"
    try:
        with nested_under(parent, tags):
            train(tcfg, on_epoch=pruning(trial, key, tcfg.train.epochs))
        run_id = read_run_id(checkpoint)
        calibrate(tcfg)
        evaluate(tcfg)
    except BaseException as exc:  # pruned, interrupted or crashed: say so on the trial's run
        pruned = isinstance(exc, optuna.TrialPruned)
        run_id = read_run_id(checkpoint)
        runs.set_tags(run_id, {"sweep.state": "PRUNED" if pruned else "FAIL"})
        runs.end(run_id, "KILLED" if pruned else "FAILED")
        raise
    finally:
        if not scfg.keep_checkpoints:
            shutil.rmtree(checkpoint, ignore_errors=True)
    trial.set_user_attr("run_id", run_id)
    metrics = json.loads((Path(tcfg.evaluate.out_dir) / "metrics.json").read_text())
    score = objective(metrics)
    trial.set_user_attr("score", asdict(score))
    runs.log_metrics(
        run_id,
        {
            "sweep/objective": score.value,
            "sweep/worst_fpr": score.worst_fpr,
            "sweep/compliant": float(score.compliant),
        },
    )
    runs.set_tags(run_id, {"sweep.state": "COMPLETE"})
    log.info(
        "trial %d: objective %.4f (%s %.4f, worst automated FPR %.3f%s, %s %.4f)",
        trial.number,
        score.value,
        objective.metric,
        score.metric,
        score.worst_fpr,
        "" if score.compliant else f" > target {objective.fpr_target}: penalised",
        objective.tie_breaker,
        score.tie_breaker,
    )
    return score.value

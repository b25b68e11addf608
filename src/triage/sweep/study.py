"""Stage `sweep`: an Optuna search over the training config, one MLflow parent run per sweep.

``triage sweep sweep=quick [overrides]`` runs the trials of the search space in
``configs/sweep/quick.yaml``. Each trial composes the project config (the command's overrides,
then ``sweep.overrides``, then one sampled value per ``sweep.params`` entry), trains (the pruner
sees every epoch's validation metrics), calibrates on calib and evaluates on **val** (test stays
untouched), and returns the objective of :mod:`triage.sweep.objective`. Stop it at any time; the
same command resumes it.

Reads:  the prepared data of ``data`` (``triage prepare`` first) and the encoder, as `train` does.
Writes: the Optuna study in ``sweep.storage`` (SQLite under ``models/sweeps/`` by default);
        ``{sweep.out_dir}/trial_<n>/``: ``config.yaml``, ``calibration.json``, ``evaluation/``
        (on val) and, with ``keep_checkpoints``, ``checkpoint/``; at the end of every session
        ``{sweep.out_dir}/``: ``summary.csv`` and ``summary.md`` (trial, parameters, objective,
        metric, worst per-class FPR, ECE, coverage, duration), ``best.json``,
        ``search_space.yaml``, ``parallel_coordinate.png`` and ``param_importances.png``.
        MLflow: a parent run per study (its id is kept in the study, so a resumed sweep adds to
        the same parent) holding the sweep config, the search space, the best trial, the summary
        and the plots; each trial's training run is a nested child holding its full config,
        per-epoch metrics, calibration and val evaluation and ``sweep/objective``.

Workers: ``sweep.n_jobs`` of them share the study through its storage; one runs in this process,
more are started by submitit, as local processes (``sweep.launcher=local``) or SLURM jobs
(``sweep.launcher=slurm``, with a storage URL every node reaches).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from omegaconf import DictConfig

from triage.config import ConfigError, load_config, parse_search_space, to_container, to_yaml
from triage.io import write_atomic, write_json
from triage.pipeline.calibrate import run as calibrate
from triage.pipeline.evaluate import run as evaluate
from triage.pipeline.train import run as train
from triage.sweep.objective import Objective
from triage.tracking import Runs, flatten, git_state, nested_under, read_run_id

log = logging.getLogger(__name__)

PARENT_ATTR = "mlflow_parent_run_id"  # study user attribute: the sweep's MLflow parent run
CONFIG_ATTR = "config"  # trial user attribute: data name and the groups below, resolved
PROMOTED_GROUPS = ("train", "model", "calibrate")  # what a trial's config can change
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
LAUNCHERS = ("local", "slurm")
PRUNERS = ("median", "hyperband", "none")
MAX_RETRY = 1  # a failed trial runs once more with the same values; a failed retry does not


def run(cfg: DictConfig, overrides: list[str]) -> Path:
    """Run (or resume) the sweep of ``cfg.sweep`` until ``sweep.n_trials`` trials have finished;
    return the sweep folder.

    Args:
        cfg: the composed config of the command.
        overrides: the command's Hydra overrides: every trial and worker composes from them.
    """
    scfg = require_sweep(cfg)
    root, out_dir = Path(cfg.paths.root), Path(scfg.out_dir)
    space = parse_search_space(list(scfg.params))
    trial_base(overrides, scfg, space)  # conflicts fail here, not in the first trial
    objective_of(cfg)  # so does an objective that cannot rank broken trials last
    if scfg.launcher not in LAUNCHERS:
        raise ConfigError(f"sweep.launcher={scfg.launcher!r}: use one of {LAUNCHERS}")
    if scfg.n_jobs < 1:
        raise ConfigError(f"sweep.n_jobs={scfg.n_jobs}: use 1 or more workers")
    if scfg.launcher == "slurm" and scfg.storage.startswith("sqlite"):
        raise ConfigError(
            "sweep.launcher=slurm needs a database every node reaches, e.g. "
            "sweep.storage=postgresql://user:password@host/optuna (an SQLite file on a shared "
            "file system breaks under concurrent writers)"
        )
    if not (Path(cfg.data.out_dir) / "train.parquet").is_file():
        raise FileNotFoundError(
            f"no prepared data in {cfg.data.out_dir}; run `triage prepare` with the same data "
            "overrides first"
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=scfg.study_name,
        storage=storage(scfg),
        direction="maximize",
        load_if_exists=True,
    )
    retried = retry_failed(study)
    done = count(study, FINISHED)
    log.info(
        "sweep %s: %d of %d trials finished%s; storage %s",
        scfg.study_name,
        done,
        scfg.n_trials,
        f", {retried} failed trial(s) queued again with the same values" if retried else "",
        scfg.storage,
    )
    write_atomic(out_dir / "search_space.yaml", lambda p: p.write_text(to_yaml(scfg)))

    runs = Runs(cfg.tracking.enabled, cfg.tracking.uri, cfg.tracking.experiment, root)
    parent = study.user_attrs.get(PARENT_ATTR)
    if runs.reopen(parent):
        log.info("MLflow: resuming parent run %s", parent)
    else:
        parent = runs.create(
            f"sweep-{scfg.study_name}",
            {**git_state(root), "stage": "sweep", "sweep.study": scfg.study_name},
        )
        if parent:
            study.set_user_attr(PARENT_ATTR, parent)
    runs.log_params(
        parent,
        {
            **flatten({"sweep": to_container(scfg)}),
            "data": cfg.data.name,
            "command": " ".join(overrides),
        },
    )
    runs.log_artifact(parent, out_dir / "search_space.yaml")

    status = "FAILED"
    try:
        launch(scfg, overrides, root, study)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        log.warning("sweep interrupted: run the same command to resume (finished trials stay)")
    finally:
        report(study, space, cfg, runs, parent, overrides)
        runs.end(parent, status)
    if status == "KILLED":
        raise SystemExit(130)
    return out_dir


def require_sweep(cfg: DictConfig) -> DictConfig:
    """``cfg.sweep``, or an error that lists the search spaces."""
    if cfg.sweep is None:
        spaces = sorted(p.stem for p in (Path(cfg.paths.root) / "configs" / "sweep").glob("*.yaml"))
        raise ConfigError(f"choose a search space: sweep=<name>, one of {spaces}")
    return cfg.sweep


def objective_of(cfg: DictConfig) -> Objective:
    """The sweep's objective, checked against the calibration's FPR target."""
    return Objective(**to_container(cfg.sweep.objective), fpr_target=cfg.calibrate.fpr_target)


def storage(scfg: DictConfig) -> optuna.storages.RDBStorage:
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


# --- Trials -------------------------------------------------------------------------------------


def override_key(override: str) -> str:
    """``"++train.head_weights.x=1"`` -> ``"train.head_weights.x"``."""
    return override.split("=", 1)[0].lstrip("+~")


def trial_base(overrides: list[str], scfg: DictConfig, space: dict[str, Any]) -> list[str]:
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


def hydra_value(value: Any) -> str:
    """A sampled value as a Hydra override value (strings quoted unless plain)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if re.fullmatch(r"[\w./:+-]+", value) and value not in ("true", "false", "null"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sample(trial: optuna.Trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One value per dimension of a :func:`~triage.config.parse_search_space` space."""
    values = {}
    for key, dim in space.items():
        if dim["kind"] == "categorical":
            values[key] = trial.suggest_categorical(key, dim["choices"])
        elif dim["kind"] == "int":
            values[key] = trial.suggest_int(key, dim["low"], dim["high"], step=dim["step"])
        else:
            values[key] = trial.suggest_float(
                key, dim["low"], dim["high"], step=dim["step"], log=dim["log"]
            )
    return values


def pruning(trial: optuna.Trial, key: str, epochs: int) -> Callable[[int, dict[str, float]], None]:
    """The epoch callback of a trial's training: reports ``metrics[key]`` and stops the trial
    (``optuna.TrialPruned``) when the pruner says so, except after the last epoch."""

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        if key not in metrics:
            raise KeyError(f"no per-epoch {key} to prune on; check sweep.objective")
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


def run_trial(trial: optuna.Trial, base: list[str], cfg: DictConfig, parent: str | None) -> float:
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
        CONFIG_ATTR, {"data": tcfg.data.name, **{g: to_container(tcfg[g]) for g in PROMOTED_GROUPS}}
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


# --- Workers ------------------------------------------------------------------------------------


def pruner(pcfg: DictConfig) -> optuna.pruners.BasePruner:
    if pcfg.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=pcfg.n_startup_trials, n_warmup_steps=pcfg.n_warmup_steps
        )
    if pcfg.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, pcfg.n_warmup_steps))
    if pcfg.name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"sweep.pruner.name={pcfg.name!r}: use one of {PRUNERS}")


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a cancelled or pre-empted job) stops the current trial like Ctrl-C does, so it
    is recorded as failed and queued again on resume."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def work(overrides: list[str], root: str, worker: int = 0, threads: int | None = None) -> int:
    """One worker: runs trials of the study until it has ``sweep.n_trials`` finished ones.

    Args:
        overrides: the sweep command's overrides.
        root: the project folder.
        worker: this worker's number (seeds its sampler apart from the others').
        threads: CPU threads for torch (local workers share the machine's cores).

    Returns:
        How many trials this worker ran.
    """
    if not logging.getLogger().handlers:  # a submitit worker process: log as the command does
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
        )
    cfg = load_config(overrides, Path(root))
    scfg = cfg.sweep
    if threads:
        import torch

        torch.set_num_threads(threads)
    base = trial_base(overrides, scfg, parse_search_space(list(scfg.params)))
    study = optuna.load_study(study_name=scfg.study_name, storage=storage(scfg))
    seed = scfg.sampler.seed + len(study.get_trials(deepcopy=False)) + 1000 * worker
    study.sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=scfg.sampler.n_startup_trials
    )
    study.pruner = pruner(scfg.pruner)
    parent = study.user_attrs.get(PARENT_ATTR)
    ran = 0
    with sigterm_interrupts():
        while count(study, FINISHED) < scfg.n_trials:
            study.optimize(lambda trial: run_trial(trial, base, cfg, parent), n_trials=1)
            ran += 1
    return ran


def launch(scfg: DictConfig, overrides: list[str], root: Path, study: optuna.Study) -> None:
    """Run the workers: in this process (one local worker) or through submitit, waiting for
    them; Ctrl-C cancels them."""
    if scfg.launcher == "local" and scfg.n_jobs == 1:
        work(overrides, str(root))
        return
    import submitit

    folder = Path(scfg.out_dir) / "workers"
    threads = None
    if scfg.launcher == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=7 * 24 * 60)  # its default is 2 minutes
        threads = max(1, (os.cpu_count() or 1) // scfg.n_jobs)
    else:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        executor.update_parameters(name=f"sweep-{scfg.study_name}", **to_container(scfg.slurm))
    jobs = [executor.submit(work, overrides, str(root), i, threads) for i in range(scfg.n_jobs)]
    log.info(
        "%d %s workers: %s (logs in %s)",
        len(jobs),
        scfg.launcher,
        ", ".join(j.job_id for j in jobs),
        folder,
    )
    try:
        seen = -1
        while not all(job.done() for job in jobs):
            done = count(study, FINISHED)
            if done != seen:
                log.info("%d of %d trials finished", done, scfg.n_trials)
                seen = done
            time.sleep(5)
    except KeyboardInterrupt:
        for job in jobs:
            job.cancel(check=False)
        raise
    for job in jobs:
        if job.exception() is not None:
            raise RuntimeError(
                f"sweep worker {job.job_id} failed: {job.exception()}\nits log: "
                f"{job.paths.stderr}; fix the cause and run the same command to resume"
            )


# --- Report -------------------------------------------------------------------------------------


def summary(study: optuna.Study, space: dict[str, Any], objective: Objective) -> pd.DataFrame:
    """One row per trial: number, state, parameters, objective, metric, worst per-class FPR,
    tie-breaker, coverage, duration (seconds)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        score = t.user_attrs.get("score", {})
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        end = t.datetime_complete
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                **{k: t.params.get(k) for k in space},
                "objective": score.get("value"),
                # a pruned trial: its metric at the epoch it was stopped
                objective.metric: score.get("metric", last),
                "worst_fpr": score.get("worst_fpr"),
                objective.tie_breaker: score.get("tie_breaker"),
                "coverage": score.get("coverage"),
                "duration_s": (end - t.datetime_start).total_seconds()
                if end and t.datetime_start
                else None,
            }
        )
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """A Markdown table; numbers with 4 significant digits, missing values blank."""

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = [
        "| " + " | ".join(table.columns) + " |",
        "|" + "|".join("---" for _ in table.columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.astype(object).values]
    return "\n".join(lines) + "\n"


def plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Parallel coordinates and parameter importances (needs two complete trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    if count(study, (optuna.trial.TrialState.COMPLETE,)) < 2:
        return []
    files = []
    # rc_context: Optuna switches matplotlib to its own style; later evaluate plots keep theirs
    with warnings.catch_warnings(), plt.rc_context():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # axis limits of a parameter with one value
        for name, draw in (
            ("parallel_coordinate", ovm.plot_parallel_coordinate),
            ("param_importances", ovm.plot_param_importances),
        ):
            fig = draw(study).figure
            write_atomic(
                out_dir / f"{name}.png",
                lambda p, fig=fig: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"),
            )
            plt.close(fig)
            files.append(out_dir / f"{name}.png")
    return files


def report(
    study: optuna.Study,
    space: dict[str, Any],
    cfg: DictConfig,
    runs: Runs,
    parent: str | None,
    overrides: list[str],
) -> None:
    """Print and save the summary table; save the best trial and the plots; log all of it to
    the parent run."""
    out_dir, objective = Path(cfg.sweep.out_dir), objective_of(cfg)
    table = summary(study, space, objective)
    if table.empty:
        return
    text = markdown(table)
    write_atomic(out_dir / "summary.csv", lambda p: table.to_csv(p, index=False))
    write_atomic(out_dir / "summary.md", lambda p: p.write_text(text))
    print(f"\nsweep {cfg.sweep.study_name}: {len(table)} trials\n\n{text}")
    files = [out_dir / "summary.csv", out_dir / "summary.md", *plots(study, out_dir)]
    states = table["state"].value_counts().to_dict()
    runs.log_metrics(parent, {f"trials/{s.lower()}": float(n) for s, n in states.items()})
    best = best_trial(study)
    if best is not None:
        record = {
            "study": cfg.sweep.study_name,
            "trial": best.number,
            "objective": best.value,
            "params": best.params,
            "score": best.user_attrs.get("score"),
            "overrides": best.user_attrs.get("overrides"),
            "run_id": best.user_attrs.get("run_id"),
        }
        write_json(out_dir / "best.json", record)
        files.append(out_dir / "best.json")
        runs.log_metrics(
            parent,
            {
                "best/trial": float(best.number),
                "best/objective": best.value,
                **{f"best/{k}": v for k, v in objective.named(record["score"]).items()},
            },
        )
        runs.set_tags(parent, {"best.trial": str(best.number), "best.run_id": record["run_id"]})
        which = ("sweep", "sweep.study_name", "sweep.storage")  # what names the study
        sweep_args = [o for o in overrides if override_key(o) in which]
        print(f"best: trial {best.number}, objective {best.value:.4f}, {best.params}")
        print(f"promote it: triage sweep-promote {' '.join(sweep_args)}")
    for path in files:
        runs.log_artifact(parent, path)

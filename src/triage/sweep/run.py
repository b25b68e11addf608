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

The parts: :mod:`~triage.sweep.space` (the search space), :mod:`~triage.sweep.study` (the
study's storage), :mod:`~triage.sweep.trial` (one trial), :mod:`~triage.sweep.workers` (who runs
the trials) and :mod:`~triage.sweep.summary` (what a session leaves).
"""

from __future__ import annotations

import logging
from pathlib import Path

import optuna

from triage.config import Config, to_container, to_yaml
from triage.errors import MissingInputError
from triage.io import write_atomic
from triage.sweep.space import parse_search_space
from triage.sweep.study import (
    FINISHED,
    PARENT_ATTR,
    count,
    objective_of,
    require_sweep,
    retry_failed,
    storage,
)
from triage.sweep.summary import report
from triage.sweep.trial import trial_base
from triage.sweep.workers import check, launch
from triage.tracking import Runs, flatten, git_state

log = logging.getLogger(__name__)


def run(cfg: Config, overrides: list[str]) -> Path:
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
    check(scfg)  # and a launcher that cannot work
    if not (Path(cfg.data.out_dir) / "train.parquet").is_file():
        raise MissingInputError(
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

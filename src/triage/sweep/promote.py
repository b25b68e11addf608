"""Stage `sweep-promote`: turn a sweep's best trial into an experiment the pipeline can run.

``triage sweep-promote sweep=quick`` (the same ``sweep=...`` and ``sweep.*`` overrides as the
sweep) reads the best complete trial of the study and writes its training config, as the values
that differ from the project defaults, to ``configs/experiment/<study>_best.yaml``. Run it with
``triage train experiment=<study>_best`` (then calibrate and evaluate as usual). To make it what
``dvc repro`` trains (DVC's stage commands are fixed; the train stage depends on
``configs/config.yaml`` and on ``configs/experiment/``), set ``experiment: <study>_best`` in the
defaults of ``configs/config.yaml`` by hand: this command never edits tracked config files.

Reads:  the study in ``sweep.storage`` (each trial keeps the resolved ``train``, ``model`` and
        ``calibrate`` groups it ran with).
Writes: ``configs/experiment/<study>_best.yaml``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
import yaml

from triage.config import Config, load_config, to_container
from triage.errors import ConfigError
from triage.io import write_atomic
from triage.sweep.study import (
    CONFIG_ATTR,
    PROMOTED_GROUPS,
    best_trial,
    objective_of,
    require_sweep,
    storage,
)

log = logging.getLogger(__name__)

# where a trial's outputs went or where the encoder is cached: not part of what it trained
NOT_PROMOTED = {"out_dir", "checkpoint", "out_file", "cache_dir"}


def changes(trained: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The values of ``trained`` that differ from ``defaults``, per group, without paths."""
    out: dict[str, Any] = {}
    for group in PROMOTED_GROUPS:
        diff = {
            k: v
            for k, v in trained.get(group, {}).items()
            if k not in NOT_PROMOTED and defaults[group].get(k) != v
        }
        if diff:
            out[group] = diff
    return out


def run(cfg: Config) -> Path:
    """Write the best trial's experiment file; return its path."""
    scfg = require_sweep(cfg)
    root = Path(cfg.paths.root)
    try:
        study = optuna.load_study(study_name=scfg.study_name, storage=storage(scfg))
    except KeyError as exc:
        raise ConfigError(
            f"no study {scfg.study_name!r} in {scfg.storage}; run `triage sweep` with the same "
            "sweep overrides first"
        ) from exc
    best = best_trial(study)
    if best is None:
        raise ConfigError(f"study {scfg.study_name!r} has no complete trial yet")
    trained = best.user_attrs[CONFIG_ATTR]
    defaults = to_container(load_config(["~experiment"], root))
    values = changes(trained, defaults)
    name = f"{scfg.study_name}_best"
    numbers = objective_of(cfg).named(best.user_attrs["score"])
    data = trained["data"]
    header = [
        "# @package _global_",
        f"# The best trial of sweep `{scfg.study_name}` (written by `triage sweep-promote`):",
        f"# trial {best.number}, objective {best.value:.4f}; on val: "
        + ", ".join(f"{k} {v:.4f}" for k, v in numbers.items()),
        f"# MLflow run {best.user_attrs.get('run_id')}; trained on data={data}.",
        f"# Values that differ from the defaults. Use: triage train experiment={name}",
    ]
    body = {**values, "tracking": {"run_name": name}}
    path = root / "configs" / "experiment" / f"{name}.yaml"
    text = "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False)
    write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))
    load_config([f"experiment={name}"], root)  # it composes, or the error says why
    log.info("wrote %s: %s", path, values or "the defaults")
    use = f"triage train experiment={name}"
    if data != defaults["data"]["name"]:
        use = f"triage train data={data} experiment={name}"
        log.warning(
            "the sweep trained on data=%s, the pipeline (dvc.yaml) on data=%s",
            data,
            defaults["data"]["name"],
        )
    log.info(
        "train it with `%s`, or make it what `dvc repro` trains: set `experiment: %s` in the "
        "defaults of configs/config.yaml by hand",
        use,
        name,
    )
    return path

"""What a sweep session leaves at its end: ``summary.csv`` and ``summary.md`` (one row per
trial), ``best.json``, the Optuna plots, and all of it on the sweep's MLflow parent run."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from triage.config import Config
from triage.io import write_atomic, write_json
from triage.sweep.objective import Objective
from triage.sweep.space import override_key
from triage.sweep.study import best_trial, count, objective_of
from triage.tracking import Runs


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
    cfg: Config,
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

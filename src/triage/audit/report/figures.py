"""The report's figures: reliability diagrams, automated false-positive rates with their
intervals, and the drift comparisons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def write_plots(metrics: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from triage.modeling import plots

    out.mkdir(parents=True, exist_ok=True)
    names = []
    for head, value in metrics["calibration"].items():
        path = out / f"{head}_reliability.png"
        plots.reliability(pd.DataFrame(value["bins"]), path, f"{head} (audit control slice)")
        names.append(f"plots/{path.name}")
    fpr = {k: v["weighted"] for k, v in metrics["fpr_by_class"].items() if k != "all"}
    if fpr:
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(fpr) + 1.5))
        keys = list(fpr)
        est = np.array([fpr[k]["estimate"] for k in keys])
        err = np.array(
            [[est[i] - fpr[k]["lower"], fpr[k]["upper"] - est[i]] for i, k in enumerate(keys)]
        )
        ax.barh(keys, est, xerr=err.T, color="C0", alpha=0.7)
        target = metrics["targets"].get("auto_fpr")
        if target is not None:
            ax.axvline(target, color="C3", ls="--", label=f"target {target:.0%}")
            ax.legend()
        ax.set(xlabel="automated false-positive rate (weighted, 95% CI)", xlim=(0, 1))
        fig.tight_layout()
        fig.savefig(out / "automated_fpr.png", dpi=110)
        plt.close(fig)
        names.append("plots/automated_fpr.png")
    for key, value in metrics["drift"].items():
        if key.endswith("_mix"):
            cats = value.get("labels") or value.get("languages")
            series = {
                k: value[k]
                for k in ("train", "predicted", "estimated_true", "period")
                if value.get(k)
            }
        elif key in ("confidence", "novelty"):
            edges = value["edges"]
            cats = [f"{edges[i]:.2g}" for i in range(len(edges) - 1)]
            series = {"test (reference)": value["reference"], "period": value["period"]}
        else:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.2))
        width = 0.8 / len(series)
        for j, (label, vals) in enumerate(series.items()):
            ax.bar(np.arange(len(cats)) + j * width, vals, width=width, label=label)
        ax.set_xticks(np.arange(len(cats)) + 0.4 - width / 2, cats, rotation=45, ha="right")
        ax.set(ylabel="share", title=key.replace("_", " "))
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"drift_{key}.png", dpi=110)
        plt.close(fig)
        names.append(f"plots/drift_{key}.png")
    return names

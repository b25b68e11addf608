"""The number a sweep maximises, as a pure function of an evaluation's metrics.

Users want the intent head to be right (macro-F1) *and* its automated decisions to keep the
false-positive target: the share of a class's automated decisions that are wrong must stay at or
under ``calibrate.fpr_target``, the same rule :mod:`triage.pipeline.evaluate` flags
(``auto_fpr/<label>``). A trial that breaks it is not dropped or ranked silently among the
others: its score is shifted below every compliant trial's, by more the further it breaks the
target. Calibration (ECE) breaks ties.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from triage.errors import ConfigError


class MissingMetricError(ConfigError, KeyError):
    """``sweep.objective`` names a metric that the evaluation (or training) does not report."""

    __str__ = Exception.__str__  # the message as it is, not quoted as a KeyError's key


@dataclass(frozen=True)
class TrialScore:
    """A trial's objective value and the numbers it was made of."""

    value: float
    metric: float  # the maximised metric (val intent macro-F1 by default)
    tie_breaker: float  # the minimised tie-breaker (val intent ECE by default)
    worst_fpr: float  # the largest share of wrong automated decisions of any class, any head
    worst_class: str  # "<head>/<label>" of that share ("" when nothing was automated)
    coverage: float  # share of messages the objective's head decides automatically
    compliant: bool  # worst_fpr <= fpr_target


@dataclass(frozen=True)
class Objective:
    """``value = metric - tie_weight * tie_breaker``, minus ``penalty + excess`` when a class's
    automated decisions are wrong more often than ``fpr_target`` (``excess`` = the worst share
    minus the target).

    A compliant value lies in ``[-tie_weight, 1]`` (metric and tie-breaker in ``[0, 1]``), so a
    ``penalty`` above ``1 + tie_weight`` ranks every breaking trial below every compliant one.

    Args:
        head: the head whose metric is maximised (``intent``).
        metric: key under ``{split}/{head}/`` to maximise (``macro_f1``).
        tie_breaker: key under ``{split}/{head}/`` to minimise (``ece``).
        tie_weight: weight of the tie-breaker; small, so it only separates near-equal metrics.
        penalty: the shift of a trial that breaks the target.
        fpr_target: the largest allowed share of wrong automated decisions per class.
        split: the split the metrics were computed on.
    """

    head: str
    metric: str
    tie_breaker: str
    tie_weight: float
    penalty: float
    fpr_target: float
    split: str = "val"

    def __post_init__(self) -> None:
        if not 0 <= self.tie_weight < 1:
            raise ConfigError(f"sweep.objective.tie_weight={self.tie_weight}: use 0 <= w < 1")
        if self.penalty <= 1 + self.tie_weight:
            raise ConfigError(
                f"sweep.objective.penalty={self.penalty} must exceed 1 + tie_weight "
                f"({1 + self.tie_weight}), or a trial that breaks the FPR target could outrank "
                "a compliant one"
            )

    def __call__(self, metrics: Mapping[str, Any]) -> TrialScore:
        """Score one evaluation's ``metrics.json`` content.

        Raises:
            MissingMetricError: the metrics lack the head's metric or tie-breaker, with the keys
                to check.
        """
        prefix = f"{self.split}/{self.head}/"
        missing = [k for k in (self.metric, self.tie_breaker) if prefix + k not in metrics]
        if missing:
            raise MissingMetricError(
                f"the evaluation has no {', '.join(prefix + k for k in missing)}: check "
                f"sweep.objective (head {self.head!r}) against the heads of the data"
            )
        metric = float(metrics[prefix + self.metric])
        tie = float(metrics[prefix + self.tie_breaker])
        worst_fpr, worst_class = 0.0, ""
        for key, share in metrics.items():
            # overall per-class shares only: "{split}/{head}/auto_fpr/{label}" (the per-language
            # ones have one more level and are noisier slices of the same decisions)
            parts = key.split("/")
            overall = len(parts) == 4 and parts[0] == self.split and parts[2] == "auto_fpr"
            if overall and float(share) > worst_fpr:
                worst_fpr, worst_class = float(share), f"{parts[1]}/{parts[3]}"
        value = metric - self.tie_weight * tie
        compliant = worst_fpr <= self.fpr_target
        if not compliant:
            value -= self.penalty + (worst_fpr - self.fpr_target)
        return TrialScore(
            value=value,
            metric=metric,
            tie_breaker=tie,
            worst_fpr=worst_fpr,
            worst_class=worst_class,
            coverage=float(metrics.get(f"{prefix}coverage", 0.0)),
            compliant=compliant,
        )

    def named(self, score: Mapping[str, Any]) -> dict[str, float]:
        """A score's (or its stored dict's) numbers under their names: the metric's, the
        tie-breaker's, ``worst_fpr`` and ``coverage``."""
        return {
            self.metric: float(score["metric"]),
            self.tie_breaker: float(score["tie_breaker"]),
            "worst_fpr": float(score["worst_fpr"]),
            "coverage": float(score["coverage"]),
        }

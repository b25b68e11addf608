"""The objective ranks trials that break the FPR target below every compliant one."""

from __future__ import annotations

import pytest

from triage.errors import ConfigError, TriageError
from triage.sweep.objective import MissingMetricError, Objective


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


def test_objective_errors_are_config_errors_that_say_what_to_check():
    with pytest.raises(ConfigError, match="must exceed 1 \\+ tie_weight") as caught:
        Objective("intent", "macro_f1", "ece", 0.01, 1.0, fpr_target=0.05)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(ConfigError, match=r"tie_weight=1\.0"):
        Objective("intent", "macro_f1", "ece", 1.0, 3.0, fpr_target=0.05)
    with pytest.raises(MissingMetricError, match="val/intent/accuracy") as missing:
        Objective("intent", "accuracy", "ece", 0.01, 2.0, 0.05)(metrics(0.9, 0.0))
    assert isinstance(missing.value, KeyError) and isinstance(missing.value, TriageError)
    assert str(missing.value).startswith("the evaluation has no val/intent/accuracy: check")

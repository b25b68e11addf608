"""A trial's pieces: its base overrides and the pruning callback of its training."""

from __future__ import annotations

import optuna
import pytest

from triage.config import load_config
from triage.errors import ConfigError
from triage.sweep.objective import MissingMetricError
from triage.sweep.space import parse_search_space
from triage.sweep.trial import pruning, trial_base, trial_paths

KEY = "val/intent/macro_f1"


def test_trial_base_drops_the_sweeps_overrides_and_refuses_searched_keys(root):
    cfg = load_config(["sweep=quick"], root=root)
    space = parse_search_space(list(cfg.sweep.params))
    base = trial_base(["sweep=quick", "sweep.n_trials=9", "data=authored"], cfg.sweep, space)
    assert base == [*cfg.sweep.overrides, "data=authored"]
    with pytest.raises(ConfigError, match=r"train\.lr is searched"):
        trial_base(["sweep=quick", "train.lr=1e-4"], cfg.sweep, space)


def test_trial_paths_put_every_output_in_the_trial_folder_and_evaluate_on_val(root, tmp_path):
    folder = tmp_path / "with space" / "trial_3"
    cfg = load_config(trial_paths(folder, "quick", 3), root=root)
    assert cfg.train.out_dir == cfg.calibrate.checkpoint == str(folder / "checkpoint")
    assert cfg.evaluate.calibration == str(folder / "calibration.json")
    assert cfg.evaluate.out_dir == str(folder / "evaluation")
    assert cfg.evaluate.split == "val" and cfg.evaluate.compare_with is None
    assert cfg.tracking.run_name == "quick-trial_3"


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
    with pytest.raises(MissingMetricError, match="no per-epoch"):
        pruning(study.ask(), KEY, epochs=3)(1, {})

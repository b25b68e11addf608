"""Every sweep config composes with every experiment, and the errors a user can make in one say
what to do before any trial runs."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from triage.cli import main
from triage.config import load_config
from triage.errors import ConfigError, MissingInputError, TriageError
from triage.sweep.run import run
from triage.sweep.space import hydra_value, parse_search_space
from triage.sweep.study import objective_of, require_sweep
from triage.sweep.trial import trial_base
from triage.sweep.workers import check, pruner

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = sorted(p.stem for p in (ROOT / "configs" / "sweep").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))


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
    objective_of(cfg)  # the penalty ranks broken trials last
    pruner(cfg.sweep.pruner)
    check(cfg.sweep)
    base = trial_base(command, cfg.sweep, space)
    assert not any(o.startswith("sweep") for o in base)  # a trial's run holds no sweep config
    for chosen in corners(space):
        trial = load_config([*base, *chosen], root=root)
        assert trial.sweep is None
        for override in chosen:
            key, value = override.lstrip("+").split("=", 1)
            group, field, *rest = key.split(".")
            node = getattr(getattr(trial, group), field)
            assert str(node[rest[0]] if rest else node).lower() == value.strip("'").lower()


def test_sweep_config_errors_say_what_to_do(root, capsys):
    assert main(["sweep"]) == 1
    err = capsys.readouterr().err
    assert "choose a search space: sweep=<name>, one of [" in err and "'quick'" in err
    with pytest.raises(ConfigError, match="choose a search space"):
        require_sweep(load_config([], root=root))
    with pytest.raises(ConfigError, match="is not a sweep"):
        parse_search_space(["train.epochs=3"])
    with pytest.raises(ConfigError, match=r"sweep\.pruner\.name='best'"):
        pruner(load_config(["sweep=quick", "sweep.pruner.name=best"], root=root).sweep.pruner)
    # promotion never edits configs/config.yaml: the option that did is gone
    with pytest.raises(ConfigError, match="set_default"):
        load_config(["sweep=quick", "sweep.set_default=true"], root=root)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sweep.launcher=pbs"], "sweep.launcher='pbs': use one of"),
        (["sweep.n_jobs=0"], "use 1 or more workers"),
        (["sweep.launcher=slurm"], "needs a database every node reaches"),
        (["sweep.objective.penalty=1.0"], "must exceed 1 \\+ tie_weight"),
        (["train.lr=1e-4"], r"train\.lr is searched"),
    ],
)
def test_a_sweep_that_cannot_work_fails_before_its_study_exists(root, tmp_path, overrides, message):
    command = ["sweep=quick", f"sweep.storage=sqlite:///{tmp_path}/s.db", *overrides]
    with pytest.raises(TriageError, match=message):
        run(load_config(command, root=root), command)
    assert not (tmp_path / "s.db").exists()


def test_a_sweep_without_prepared_data_says_which_command_makes_it(root, tmp_path):
    command = [
        "sweep=quick",
        f"sweep.storage=sqlite:///{tmp_path}/s.db",
        f"data.out_dir={tmp_path}",
    ]
    with pytest.raises(MissingInputError, match="run `triage prepare`"):
        run(load_config(command, root=root), command)
    assert not (tmp_path / "s.db").exists()


def test_promote_needs_a_study_with_a_complete_trial(root, tmp_path):
    from triage.sweep.promote import run as promote
    from triage.sweep.study import storage

    cfg = load_config(["sweep=quick", f"sweep.storage=sqlite:///{tmp_path}/s.db"], root=root)
    with pytest.raises(ConfigError, match=r"no study 'quick' in sqlite:///.*run `triage sweep`"):
        promote(cfg)
    optuna.create_study(study_name="quick", storage=storage(cfg.sweep))
    with pytest.raises(ConfigError, match="study 'quick' has no complete trial yet"):
        promote(cfg)
    assert not (root / "configs" / "experiment" / "quick_best.yaml").exists()

"""Every config composes, and a typo fails with the key it could not find."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from triage.config import ConfigError, load_config

DATA_CONFIGS = ["authored", "social", "banking77", "clinc150"]


@pytest.mark.parametrize("data", DATA_CONFIGS)
def test_every_data_config_composes(root, data):
    cfg = load_config([f"data={data}"], root=root)
    assert cfg.data.name == data
    assert cfg.data.out_dir == f"{root}/data/processed/{data}"
    assert cfg.data.sources, "a data config without sources"
    assert set(cfg.data.heads) <= {"intent", "sentiment"}


def test_social_extends_authored(root):
    cfg = load_config(["data=social"], root=root)
    authored = load_config([], root=root)
    assert "authored" in cfg.data.sources
    assert cfg.data.heads["intent"].labels == authored.data.heads["intent"].labels
    assert len(cfg.data.sources) > 1


def test_paths_are_absolute_and_overridable(root, monkeypatch, tmp_path):
    monkeypatch.setenv("TRIAGE_DATA_ROOT", str(tmp_path))
    cfg = load_config([], root=root)
    assert cfg.paths.root == str(root)
    assert cfg.paths.public_data == str(tmp_path)


def test_a_relative_root_is_resolved(root, monkeypatch):
    monkeypatch.chdir(root.parent)
    cfg = load_config([], root=Path(root.name))  # relative to the working directory
    assert cfg.paths.root == str(root)


@pytest.mark.parametrize(
    "override",
    [
        "data.splt.test=0.2",  # unknown key
        "data.seed=abc",  # wrong type
        "data=nonexistent",  # unknown group option
        "data.sources.authored.on_invalid=ignore",  # not one of the enum values
    ],
)
def test_bad_override_fails_clearly(root, override):
    with pytest.raises(ConfigError, match="invalid configuration"):
        load_config([override], root=root)


@pytest.mark.parametrize("experiment", ["quick", "full"])
def test_every_experiment_composes_and_overrides_only_what_changes(root, experiment):
    base = load_config([], root=root)
    cfg = load_config([f"experiment={experiment}"], root=root)
    assert cfg.tracking.run_name == experiment
    changed = {k for k, v in vars(base.train).items() if v != getattr(cfg.train, k)}
    assert changed and changed <= {
        "epochs",
        "max_train_rows",
        "patience",
        "freeze_embeddings",
        "lr",
    }
    assert cfg.data == base.data


TRAIN_CONFIGS = sorted(p.stem for p in (ROOT / "configs" / "train").glob("*.yaml"))


@pytest.mark.parametrize("train", TRAIN_CONFIGS)
def test_every_train_config_composes(root, train):
    cfg = load_config([f"train={train}"], root=root)
    assert cfg.train.epochs > 0
    if train.startswith("distill"):
        assert cfg.train.distill.teacher and "massive" in cfg.train.distill.unlabelled


MODEL_CONFIGS = sorted(p.stem for p in (ROOT / "configs" / "model").glob("*.yaml"))


@pytest.mark.parametrize("model", MODEL_CONFIGS)
def test_every_model_config_composes_with_valid_layers(root, model):
    cfg = load_config([f"model={model}"], root=root)
    layers = cfg.model.layers
    if layers is not None:  # a student: distinct layers of the 12, in order
        assert list(layers) == sorted(set(layers)) and layers[0] >= 0 and layers[-1] < 12
        assert model.endswith(f"_l{len(layers)}")

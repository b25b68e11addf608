"""Model, loss, metrics and the training stage, on a tiny encoder built in code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModel, AutoTokenizer

from triage.config import load_config
from triage.errors import ConfigError, MissingInputError
from triage.modeling.metrics import per_class, summary
from triage.modeling.model import (
    TriageModel,
    build_model,
    encoder_from_checkpoint,
    load_checkpoint,
    multitask_loss,
    predict_proba,
    save_checkpoint,
)
from triage.pipeline.prepare import run as prepare
from triage.pipeline.train import LengthBucketSampler, freeze
from triage.pipeline.train import run as train
from triage.schema import MISSING_LABEL

TEXTS = ["Waar blijft mijn pakket?", "love this product", "cancel my order pls", "😂😂"]


def test_loss_ignores_missing_labels_per_head():
    torch.manual_seed(0)
    logits = {"intent": torch.randn(4, 5), "sentiment": torch.randn(4, 3)}
    targets = {
        "intent": torch.tensor([1, MISSING_LABEL, 3, MISSING_LABEL]),
        "sentiment": torch.tensor([MISSING_LABEL, MISSING_LABEL, MISSING_LABEL, MISSING_LABEL]),
    }
    loss, parts = multitask_loss(logits, targets)
    expected = torch.nn.functional.cross_entropy(logits["intent"][[0, 2]], torch.tensor([1, 3]))
    assert torch.isfinite(loss) and torch.allclose(loss, expected)
    assert set(parts) == {"intent"}  # a head with no label in the batch adds nothing
    targets["sentiment"] = torch.tensor([0, 2, MISSING_LABEL, MISSING_LABEL])
    loss2, _ = multitask_loss(logits, targets, head_weights={"sentiment": 0.5})
    sentiment = torch.nn.functional.cross_entropy(logits["sentiment"][:2], torch.tensor([0, 2]))
    assert torch.allclose(loss2, expected + 0.5 * sentiment)


def test_metrics_on_literal_arrays_and_against_sklearn():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    stats = per_class(y_true, y_pred, 3)
    # class 0: tp 1, fp 1 (a 2 predicted as 0), 4 negatives -> fpr 0.25
    np.testing.assert_allclose(stats["fpr"], [0.25, 0.25, 0.0])
    np.testing.assert_allclose(stats["precision"], [0.5, 2 / 3, 1.0])
    np.testing.assert_allclose(stats["recall"], [0.5, 1.0, 0.5])
    rng = np.random.default_rng(0)
    for _ in range(5):
        t, p = rng.integers(0, 6, 200), rng.integers(0, 6, 200)
        got = summary(t, p, [f"c{i}" for i in range(7)])  # class 6 never occurs
        assert got["macro_f1"] == pytest.approx(f1_score(t, p, average="macro"))
        assert got["accuracy"] == pytest.approx(accuracy_score(t, p))
        assert got["fpr/c6"] == 0.0


def test_length_bucket_sampler_covers_every_row_once_with_little_padding():
    rng = np.random.default_rng(1)
    lengths = rng.integers(3, 60, 500).tolist()
    sampler = LengthBucketSampler(lengths, batch_size=16, seed=3, bucket_batches=8)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert len(batches) == len(sampler)
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 15  # random batches of 16 from 3..60 spread about 50
    assert batches == list(sampler)  # same epoch, same batches
    sampler.set_epoch(1)
    assert batches != list(sampler)


@pytest.fixture(scope="module")
def one_head_model(tiny_encoder):
    torch.manual_seed(0)
    encoder = AutoModel.from_pretrained(str(tiny_encoder), add_pooling_layer=False)
    return TriageModel(encoder, {"intent": ["a", "b", "c"]}, dropout=0.1)


def test_model_with_one_head(one_head_model, tiny_encoder):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_encoder))
    probs = predict_proba(one_head_model, tokenizer, TEXTS, "query: ", 32)
    assert set(probs) == {"intent"} and probs["intent"].shape == (4, 3)
    np.testing.assert_allclose(probs["intent"].sum(axis=1), 1.0, rtol=1e-5)


def test_save_load_round_trip_predicts_identically(one_head_model, tiny_encoder, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_encoder))
    save_checkpoint(
        one_head_model, tokenizer, tmp_path / "ckpt", {"input_prefix": "query: ", "run_id": "abc"}
    )
    model, tok, meta = load_checkpoint(tmp_path / "ckpt")
    assert meta["labels"] == {"intent": ["a", "b", "c"]} and meta["input_prefix"] == "query: "
    assert (tmp_path / "ckpt" / "run_id").read_text().strip() == "abc"
    before = predict_proba(one_head_model, tokenizer, TEXTS, "query: ", 32)["intent"]
    after = predict_proba(model, tok, TEXTS, "query: ", 32)["intent"]
    np.testing.assert_array_equal(before, after)


def test_freeze(one_head_model):
    freeze(one_head_model, embeddings=True, layers=1)
    enc = one_head_model.encoder
    assert not enc.get_input_embeddings().weight.requires_grad
    assert not any(p.requires_grad for p in enc.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in enc.encoder.layer[1].parameters())
    with pytest.raises(ValueError, match="freeze_layers=5"):
        freeze(one_head_model, embeddings=False, layers=5)


@pytest.mark.slow
def test_tracking_can_be_switched_off(root, tiny_encoder, tmp_path):
    cfg = load_config(
        [
            f"data.out_dir={tmp_path}/data",
            f"model.encoder={tiny_encoder}",
            f"train.out_dir={tmp_path}/ckpt",
            "train.epochs=1",
            "train.max_train_rows=64",
            "tracking.enabled=false",
        ],
        root=root,
    )
    prepare(cfg)
    out = train(cfg)
    assert not (out / "run_id").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "data"]


def test_encoder_from_checkpoint_takes_the_encoder_not_the_heads(tiny_encoder, tmp_path):
    torch.manual_seed(1)
    source = build_model(str(tiny_encoder), {"intent": ["x", "y"]}, 0.1)
    with torch.no_grad():  # a "fine-tuned" encoder: not the pretrained weights any more
        for p in source.encoder.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_encoder))
    save_checkpoint(source, tokenizer, tmp_path / "ckpt", {"encoder": "tiny"})
    encoder = encoder_from_checkpoint(tmp_path / "ckpt", "tiny")
    torch.testing.assert_close(encoder.state_dict(), source.encoder.state_dict())
    cut = encoder_from_checkpoint(tmp_path / "ckpt", "tiny", layers=[1])
    torch.testing.assert_close(
        cut.encoder.layer[0].state_dict(), source.encoder.encoder.layer[1].state_dict()
    )
    with pytest.raises(ConfigError, match=r"trained from model\.encoder='other'"):
        encoder_from_checkpoint(tmp_path / "ckpt", "other")
    with pytest.raises(MissingInputError, match="not a triage checkpoint"):
        encoder_from_checkpoint(tmp_path / "nowhere", "tiny")


@pytest.mark.slow
def test_training_starts_from_another_checkpoints_encoder(root, pipeline, tiny_encoder, tmp_path):
    """With both learning rates at 0 the new model keeps the pipeline checkpoint's encoder
    exactly and its own new heads; a second start from a teacher at once is refused."""
    _, tmp, _ = pipeline
    overrides = [
        f"data.out_dir={tmp}/data",
        f"model.encoder={tiny_encoder}",
        "model.max_length=48",
        f"train.init_encoder={tmp}/ckpt",
        f"train.out_dir={tmp_path}/ckpt",
        "train.epochs=1",
        "train.max_train_rows=64",
        "train.lr=0",
        "train.head_lr=0",
        "tracking.enabled=false",
    ]
    model, _, _ = load_checkpoint(train(load_config(overrides, root=root)))
    source, _, _ = load_checkpoint(tmp / "ckpt")
    torch.testing.assert_close(model.encoder.state_dict(), source.encoder.state_dict())
    assert not torch.equal(model.heads["intent"].weight, source.heads["intent"].weight)
    both = load_config([*overrides, f"train.distill.teacher={tmp}/ckpt"], root=root)
    with pytest.raises(ConfigError, match="both name a start"):
        train(both)

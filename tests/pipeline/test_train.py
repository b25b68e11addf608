"""Model, loss, metrics and the training stage, on a tiny encoder built in code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModel, AutoTokenizer

from triage.config import load_config
from triage.modeling.metrics import per_class, summary
from triage.modeling.model import (
    TriageModel,
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

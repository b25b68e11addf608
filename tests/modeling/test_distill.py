"""Distillation into a smaller student: the soft-target loss, cutting layers, the unlabelled
texts, and a student trained from the tiny pipeline's checkpoint as teacher."""

from __future__ import annotations

import json

import pytest
import torch

from triage.config import SourceConfig, load_config
from triage.data.texts import source_texts
from triage.errors import ConfigError, DataError
from triage.modeling.distill import soft_target_loss, teacher_logits
from triage.modeling.model import (
    build_model,
    keep_layers,
    load_checkpoint,
    predict_proba,
    save_checkpoint,
)
from triage.pipeline.train import run as train


def test_soft_target_loss_is_scaled_kl_and_zero_on_agreement():
    student = {"intent": torch.tensor([[2.0, 0.0, -1.0]]), "sentiment": torch.tensor([[0.0, 1.0]])}
    assert soft_target_loss(student, student, 2.0) == pytest.approx(0.0, abs=1e-7)
    teacher = {"intent": torch.tensor([[0.0, 3.0, 0.0]]), "sentiment": torch.tensor([[0.0, 1.0]])}
    p = torch.softmax(teacher["intent"] / 2, -1)
    q = torch.softmax(student["intent"] / 2, -1)
    expected = 4 * float((p * (p / q).log()).sum())  # sentiment agrees: adds 0
    assert float(soft_target_loss(student, teacher, 2.0)) == pytest.approx(expected, rel=1e-5)


def test_keep_layers_cuts_the_stack_and_rejects_bad_indices(tiny_encoder):
    model = build_model(str(tiny_encoder), {"intent": ["a", "b"]}, 0.1, layers=[1])
    assert len(model.encoder.encoder.layer) == 1 and model.encoder.config.num_hidden_layers == 1
    full = build_model(str(tiny_encoder), {"intent": ["a", "b"]}, 0.1)
    torch.testing.assert_close(
        model.encoder.encoder.layer[0].state_dict(), full.encoder.encoder.layer[1].state_dict()
    )
    for bad in ([], [2], [0, 0]):
        with pytest.raises(ConfigError, match=r"model\.layers"):
            keep_layers(full.encoder, bad)


def test_source_texts_leave_out_excluded_texts(root, tmp_path):
    path = tmp_path / "extra.jsonl"
    rows = ["Waar blijft mijn pakket??", "  nieuwe   tekst ", "another text", "another text!"]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows), encoding="utf-8")
    source = {"kind": "file", "path": str(path), "format": None, "columns": {}, "options": {}}
    texts = source_texts({"extra": source}, root, tmp_path, ["waar blijft mijn pakket"])
    assert sorted(texts) == ["another text", "nieuwe tekst"]  # cleaned, deduplicated
    assert len(source_texts({"extra": source}, root, tmp_path, max_rows=1)) == 1
    with pytest.raises(DataError, match="no text left"):
        source_texts({"extra": source}, root, tmp_path, rows)


def test_teacher_with_other_labels_is_refused(tiny_encoder, tmp_path):
    from transformers import AutoTokenizer

    model = build_model(str(tiny_encoder), {"intent": ["x", "y"]}, 0.1)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_encoder))
    meta = {"input_prefix": "query: ", "max_length": 32}
    save_checkpoint(model, tokenizer, tmp_path / "teacher", meta)
    with pytest.raises(ConfigError, match="same taxonomy"):
        teacher_logits(tmp_path / "teacher", {"intent": ["a", "b"]}, ["hoi"], 8)
    logits = teacher_logits(tmp_path / "teacher", {"intent": ["x", "y"]}, ["hoi", "hallo"], 8)
    assert logits["intent"].shape == (2, 2)


@pytest.mark.slow
def test_student_distilled_from_the_pipeline_checkpoint(root, pipeline, tiny_encoder, tmp_path):
    _, tmp, _ = pipeline
    extra = tmp_path / "extra.jsonl"
    lines = [json.dumps({"text": f"bericht nummer {i} over mijn bestelling"}) for i in range(40)]
    extra.write_text("\n".join(lines) + "\n", encoding="utf-8")
    student = load_config(
        [
            f"data.out_dir={tmp}/data",
            f"model.encoder={tiny_encoder}",
            "model.layers=[1]",
            "model.max_length=48",
            f"train.distill.teacher={tmp}/ckpt",
            "train.distill.max_unlabelled=30",
            f"train.out_dir={tmp_path}/student",
            "train.epochs=1",
            "train.max_train_rows=64",
            f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        ],
        root=root,
    )
    student.train.distill.unlabelled = {"extra": SourceConfig(kind="file", path=str(extra))}
    out = train(student)
    model, tokenizer, meta = load_checkpoint(out)
    assert meta["layers"] == [1] and model.encoder.config.num_hidden_layers == 1
    probs = predict_proba(model, tokenizer, ["waar is mijn pakket"], "query: ", 48)
    assert {h: p.shape for h, p in probs.items()} == {
        h: (1, len(n)) for h, n in model.labels.items()
    }
    import mlflow

    run = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(meta["run_id"])
    assert run.data.params["n_unlabelled_rows"] == "30"
    assert run.data.params["n_train_rows"] == "64"

"""triage.encoder.verify: the converted folder loads and passes its checks; broken ones do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

from triage.encoder.errors import BackboneError
from triage.encoder.verify import MARKER_FILE, REFERENCE_IDS, verify_encoder


def test_loads_with_auto_classes_and_verifies(converted: Path, tokenizer) -> None:
    model = AutoModel.from_pretrained(str(converted), add_pooling_layer=False)
    assert model.config.model_type == "bert"
    assert model.embeddings.word_embeddings.weight.shape == (250037, 384)
    enc = tokenizer(["query: hallo wereld"], return_tensors="pt")
    with torch.inference_mode():
        out = model(**enc).last_hidden_state
    assert out.shape == (1, enc["input_ids"].shape[1], 384)

    report = verify_encoder(converted)
    assert report["shapes_ok"] is True
    assert report["tokenizer_strings_matched"] == len(REFERENCE_IDS) >= 8
    assert report["engine_min_cosine"] >= 0.999
    for pair in report["translation_pairs"]:
        assert pair["translation"] > pair["unrelated"]
        assert pair["translation"] > 0.8
    assert json.loads((converted / MARKER_FILE).read_text())["engine_min_cosine"] == pytest.approx(
        report["engine_min_cosine"]
    )


@pytest.mark.parametrize("corruption", ["drop-normaliser", "xlmr-class"])
def test_corrupted_tokenizer_fails_verification(
    converted: Path, tmp_path: Path, corruption: str
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").symlink_to(converted / "model.safetensors")
    (broken / "config.json").write_text((converted / "config.json").read_text())
    tok_json = json.loads((converted / "tokenizer.json").read_text(encoding="utf-8"))
    tok_cfg = json.loads((converted / "tokenizer_config.json").read_text())
    if corruption == "drop-normaliser":
        tok_json["normalizer"] = None
    else:  # the trap itself: saved under the XLM-R class, transformers 5 rebuilds the pipeline
        tok_cfg["tokenizer_class"] = "XLMRobertaTokenizer"
    (broken / "tokenizer.json").write_text(json.dumps(tok_json, ensure_ascii=False))
    (broken / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    (broken / MARKER_FILE).write_text("{}")  # a stale marker must not survive a failed check

    with pytest.raises(BackboneError, match="failed verification: tokenizer"):
        verify_encoder(broken)
    assert not (broken / MARKER_FILE).exists()

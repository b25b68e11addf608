"""The bundle's tokenizer and the vocabulary trim: keep the pieces Dutch and English text can
use, and the matching rows of the embedding matrix."""

from __future__ import annotations

import copy
import json
import unicodedata
from collections.abc import Iterable

import numpy as np
import torch
from tokenizers import Tokenizer

from triage.errors import ConfigError
from triage.modeling.model import TriageModel


def bundle_tokenizer(tokenizer_json: dict) -> Tokenizer:
    """A ``tokenizers`` tokenizer from its JSON, with truncation and padding off."""
    tokenizer = Tokenizer.from_str(json.dumps(tokenizer_json))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def latin_piece(piece: str) -> bool:
    """True when every letter of a vocabulary piece is Latin (digits, punctuation, symbols,
    emoji and combining marks count as any script's)."""
    return all(
        not unicodedata.category(c).startswith("L") or "LATIN" in unicodedata.name(c, "")
        for c in piece
    )


def trim_vocabulary(
    tokenizer_json: dict, texts: Iterable[str], prefix: str
) -> tuple[dict, np.ndarray]:
    """Keep the vocabulary pieces whose letters are all Latin, every single character, the
    specials and whatever else ``texts`` use.

    A subword tokenizer can only use pieces that occur in the text, so a Dutch or English
    message (Latin letters, digits, punctuation, emoji) is tokenised exactly as before; a
    message in another script falls back to single characters.

    Returns:
        The trimmed tokenizer JSON and the kept old ids in new-id order (the rows of the
        embedding matrix to keep). Kept pieces keep their relative order, so the special tokens
        at the front keep their ids.

    Raises:
        ConfigError: a tokenizer model or post-processor this function does not know.
    """
    model = tokenizer_json["model"]
    if model["type"] == "Unigram":
        pieces = [piece for piece, _ in model["vocab"]]
    elif model["type"] == "WordPiece":
        pieces = [""] * len(model["vocab"])
        for piece, i in model["vocab"].items():
            pieces[i] = piece
    else:
        raise ConfigError(f"cannot trim a {model['type']} vocabulary; set export.trim_vocab=false")
    tokenizer = bundle_tokenizer(tokenizer_json)
    used: set[int] = {t["id"] for t in tokenizer_json["added_tokens"]}
    for chunk in _chunks(list(texts), 2048):
        for encoding in tokenizer.encode_batch([prefix + t for t in chunk]):
            used.update(encoding.ids)
    used.update(
        i
        for i, p in enumerate(pieces)
        if latin_piece(p) or len(p.removeprefix("▁").removeprefix("##")) <= 1
    )
    keep = np.array(sorted(used))
    new_id = {int(old): new for new, old in enumerate(keep)}
    out = copy.deepcopy(tokenizer_json)
    if model["type"] == "Unigram":
        out["model"]["vocab"] = [model["vocab"][i] for i in keep]
        if model.get("unk_id") is not None:
            out["model"]["unk_id"] = new_id[model["unk_id"]]
    else:
        out["model"]["vocab"] = {pieces[i]: new_id[int(i)] for i in keep}
    for token in out["added_tokens"]:
        token["id"] = new_id[token["id"]]
    post = out.get("post_processor") or {}
    if post.get("type") == "TemplateProcessing":
        for special in post["special_tokens"].values():
            special["ids"] = [new_id[i] for i in special["ids"]]
    elif post.get("type") in ("RobertaProcessing", "BertProcessing"):
        for key in ("sep", "cls"):
            post[key] = [post[key][0], new_id[post[key][1]]]
    elif post:
        raise ConfigError(f"cannot trim with a {post['type']} post-processor")
    return out, keep


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def trimmed_model(model: TriageModel, keep: np.ndarray) -> TriageModel:
    """A copy of ``model`` whose word-embedding matrix has only the ``keep`` rows."""
    small = copy.deepcopy(model)
    weight = small.encoder.get_input_embeddings().weight.detach()[torch.as_tensor(keep)]
    small.encoder.set_input_embeddings(torch.nn.Embedding.from_pretrained(weight, freeze=True))
    small.encoder.config.vocab_size = len(keep)
    return small

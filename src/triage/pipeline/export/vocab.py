"""The bundle's tokenizer and the vocabulary trim: keep the pieces Dutch and English text uses,
and the matching rows of the embedding matrix.

The pieces come from a broad Dutch and English corpus (``triage vocab`` writes them to
``export.vocab.pieces``: the public sets' texts, never the test or evaluation sets), the
prepared splits' texts other than the gate's, every single character and the specials. A
subword tokenizer only uses pieces that occur in the text, so every corpus text tokenises
exactly as before; a word the corpus never had may split into smaller pieces (at worst single
characters), which ``triage vocab`` measures on held-out real text.
"""

from __future__ import annotations

import copy
import json
import logging
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from triage.config import Config, to_container
from triage.data.texts import source_texts
from triage.errors import ConfigError
from triage.io import atomic_text, write_json
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
    tokenizer_json: dict,
    texts: Iterable[str],
    prefix: str,
    pieces: Iterable[str] = (),
    keep_latin: bool = False,
) -> tuple[dict, np.ndarray, int]:
    """Keep the specials, every single-character piece, the pieces ``texts`` use, the listed
    ``pieces`` (those in the vocabulary; the rest are ignored) and, with ``keep_latin``, every
    piece whose letters are all Latin (then any Latin-script text tokenises exactly as before).

    Returns:
        The trimmed tokenizer JSON, the kept old ids in new-id order (the rows of the embedding
        matrix to keep) and how many of them come first: the pieces kept for the corpus (the
        specials, single characters, ``texts``' and the listed pieces), then the Latin pieces
        only ``keep_latin`` kept (the vocabulary's rare tail, which export may store in fewer
        bits). Each part keeps its pieces' relative order, so the special tokens at the front
        keep their ids.

    Raises:
        ConfigError: a tokenizer model or post-processor this function does not know.
    """
    model = tokenizer_json["model"]
    if model["type"] == "Unigram":
        vocab = [piece for piece, _ in model["vocab"]]
    elif model["type"] == "WordPiece":
        vocab = [""] * len(model["vocab"])
        for piece, i in model["vocab"].items():
            vocab[i] = piece
    else:
        raise ConfigError(f"cannot trim a {model['type']} vocabulary; set export.trim_vocab=false")
    tokenizer = bundle_tokenizer(tokenizer_json)
    used: set[int] = {t["id"] for t in tokenizer_json["added_tokens"]}
    for chunk in _chunks(list(texts), 2048):
        for encoding in tokenizer.encode_batch([prefix + t for t in chunk]):
            used.update(encoding.ids)
    listed = set(pieces)
    used.update(i for i, p in enumerate(vocab) if p in listed or _single(p))
    tail = [i for i, p in enumerate(vocab) if keep_latin and i not in used and latin_piece(p)]
    keep = np.array(sorted(used) + tail, dtype=np.int64)
    new_id = {int(old): new for new, old in enumerate(keep)}
    out = copy.deepcopy(tokenizer_json)
    if model["type"] == "Unigram":
        out["model"]["vocab"] = [model["vocab"][i] for i in keep]
        if model.get("unk_id") is not None:
            out["model"]["unk_id"] = new_id[model["unk_id"]]
    else:
        out["model"]["vocab"] = {vocab[i]: new_id[int(i)] for i in keep}
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
    return out, keep, len(used)


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


def used_pieces(tokenizer_json: dict, texts: Iterable[str], prefix: str) -> set[str]:
    """The vocabulary pieces the tokenizer produces on ``prefix + text`` for ``texts``."""
    tokenizer = bundle_tokenizer(tokenizer_json)
    out: set[str] = set()
    for chunk in _chunks(list(texts), 2048):
        for encoding in tokenizer.encode_batch([prefix + t for t in chunk]):
            out.update(encoding.tokens)
    return out


def fallback_report(
    full_json: dict, trimmed_json: dict, texts: list[str], prefix: str
) -> dict[str, float]:
    """How the trimmed vocabulary tokenises ``texts`` against the full one: the share of texts
    tokenised identically, the tokens per text before and after, and the share of the trimmed
    tokenisation's tokens that are single characters beyond those the full one had (the
    character fallback)."""
    full, trimmed = bundle_tokenizer(full_json), bundle_tokenizer(trimmed_json)
    same = before = after = chars_before = chars_after = 0
    for chunk in _chunks([prefix + t for t in texts], 2048):
        for a, b in zip(full.encode_batch(chunk), trimmed.encode_batch(chunk), strict=True):
            same += a.tokens == b.tokens
            before, after = before + len(a.tokens), after + len(b.tokens)
            chars_before += sum(_single(t) for t in a.tokens)
            chars_after += sum(_single(t) for t in b.tokens)
    return {
        "texts": len(texts),
        "identical_share": same / max(len(texts), 1),
        "tokens_per_text_full": before / max(len(texts), 1),
        "tokens_per_text_trimmed": after / max(len(texts), 1),
        "char_fallback_share": (chars_after - chars_before) / max(after, 1),
    }


def _single(piece: str) -> bool:
    return len(piece.removeprefix("▁").removeprefix("##")) <= 1


log = logging.getLogger(__name__)


def build(cfg: Config) -> Path:
    """``triage vocab``: the pieces the encoder's tokenizer produces on the corpus
    (``export.vocab.corpus``), written to ``export.vocab.pieces`` for the export's trim, and
    both trims (the corpus pieces alone, and with every Latin piece: ``keep_latin``) measured
    on held-out real text (``export.vocab.heldout``, sets of ``evaluate.sets``) into
    ``export.vocab.report``."""
    from transformers import AutoTokenizer

    from triage.encoder.resolve import resolve_encoder

    vcfg, root, public = cfg.export.vocab, Path(cfg.paths.root), Path(cfg.paths.public_data)
    prefix = cfg.model.input_prefix
    encoder = resolve_encoder(cfg.model.encoder, cfg.model.cache_dir)
    tokenizer_json = json.loads(AutoTokenizer.from_pretrained(encoder).backend_tokenizer.to_str())
    corpus = source_texts(to_container(vcfg.corpus), root, public, where="export.vocab.corpus")
    pieces = sorted(used_pieces(tokenizer_json, corpus, prefix))
    trims = {
        variant: trim_vocabulary(tokenizer_json, [], prefix, pieces, keep_latin)
        for variant, keep_latin in (("corpus", False), ("corpus_and_latin", True))
    }
    report: dict = {
        "encoder": cfg.model.encoder,
        "corpus_texts": len(corpus),
        "corpus_pieces": len(pieces),
        "pieces_full": len(bundle_tokenizer(tokenizer_json).get_vocab()),
        "pieces_kept": {variant: len(keep) for variant, (_, keep, _) in trims.items()},
        "heldout": {},
    }
    sets = to_container(cfg.evaluate.sets)
    for name in vcfg.heldout:
        if name not in sets:
            raise ConfigError(f"export.vocab.heldout names {name!r}, not among evaluate.sets")
        texts = source_texts({name: sets[name]}, root, public, where="evaluate.sets")
        report["heldout"][name] = {
            variant: fallback_report(tokenizer_json, trimmed, texts, prefix)
            for variant, (trimmed, _, _) in trims.items()
        }
    out = Path(vcfg.pieces)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_text(out) as f:
        json.dump({"encoder": cfg.model.encoder, "pieces": pieces}, f, ensure_ascii=False)
        f.write("\n")
    write_json(Path(vcfg.report), report)
    log.info("vocabulary: %s", json.dumps(report))
    return out


def listed_pieces(path: Path) -> list[str]:
    """The pieces ``triage vocab`` wrote (empty, with a warning, when there is no file)."""
    if not path.is_file():
        log.warning(
            "no %s: the vocabulary is trimmed to the splits' texts and single characters only; "
            "run `triage vocab` for the Dutch and English corpus pieces",
            path,
        )
        return []
    return json.loads(path.read_text(encoding="utf-8"))["pieces"]

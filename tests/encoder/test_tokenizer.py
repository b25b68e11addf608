"""triage.encoder.tokenizer: the rebuilt tokenizer, as AutoTokenizer loads it from disk."""

from __future__ import annotations

import json

from triage.encoder.verify import REFERENCE_IDS

FULL_WIDTH = "Ｎｏｒｒｌａｎｄ　ＡＢＣ１２３"


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


def test_committed_corpus_pieces_keep_common_dutch_and_english_messages_intact(tokenizer, root):
    """The export's trim (data/vocab/pieces.json, from `triage vocab`) on the real XLM-R
    tokenizer: ordinary Dutch and English inbox messages tokenise exactly as with the full
    vocabulary; a script the corpus never had falls back to single characters."""
    from triage.pipeline.export.vocab import bundle_tokenizer, listed_pieces, trim_vocabulary

    full_json = json.loads(tokenizer.backend_tokenizer.to_str())
    trimmed_json, keep, _ = trim_vocabulary(
        full_json, [], "query: ", listed_pieces(root / "data" / "vocab" / "pieces.json")
    )
    assert len(keep) < 60_000
    full, small = bundle_tokenizer(full_json), bundle_tokenizer(trimmed_json)
    messages = [
        "Waar blijft mijn bestelling? Ik wacht al een week!",
        "Ik wil mijn geld terug, het product is kapot aangekomen.",
        "Kunnen jullie me bellen? Ik kom niet in mijn account.",
        "Where is my order? I've been waiting for a week!",
        "I want a refund, the package arrived damaged.",
        "Love the new collection, thanks for the quick delivery 😍",
    ]
    for text in messages:
        assert small.encode("query: " + text).tokens == full.encode("query: " + text).tokens
    full_tokens, small_tokens = full.encode("привет").tokens, small.encode("привет").tokens
    assert full_tokens != small_tokens and "".join(small_tokens) == "".join(full_tokens)
    assert all(len(t.removeprefix("▁")) == 1 for t in small_tokens[1:-1])  # between <s> </s>

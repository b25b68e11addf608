"""triage.encoder.tokenizer: the rebuilt tokenizer, as AutoTokenizer loads it from disk."""

from __future__ import annotations

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
